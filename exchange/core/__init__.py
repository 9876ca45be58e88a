"""What every part of the hub stands on: the database schema (models, migrations, engines),
the error base class, the caller (principal and roles), the centres."""
