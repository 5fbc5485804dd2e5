class OwnerMigratesRouter:
    """Only the owner role changes the schema; the runtime role cannot even try."""

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool:
        return db == "owner"
