"""What every part of the hub stands on: the database (models, migrations, `Database`), the
UTC time column type, record ids, slide and conversion statuses, the error base class, the
caller (principal and roles), the centres, and the one GeoJSON geometry check."""
