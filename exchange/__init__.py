"""The hub: centres, users, slides and their cases, access and sharing, annotations and
overlays, the audit trail. One subpackage per concept, lower ones never importing higher
ones (the import contracts in pyproject.toml check it):

    web/                      FastAPI only here: the typed Hub of services, one routes
                              module per feature, dependencies, error mapping, the pages
    annotations/ overlays/    services on a slide the caller sees
    access/                   who may see and do what: policy, grants, the fast path's
                              caller memory
    identity/                 accounts, API tokens, sessions and the throttle, OIDC, login
    audit/ slides/            the hash-chained trail and its actions; the catalogue, cases,
                              ingest, uploads, the drop folder, conversion
    core/                     the database (models, migrations, Database), ids, statuses,
                              the UTC time type, errors, principal, centres, the GeoJSON check

Room for what comes next, at the level of what it needs: jobs/ (the hub's side of
inference, next to annotations/ overlays/), sharing/ (second opinions, threads,
collections, tumour boards: above access/), live/ (notifications, WebSocket channels).
"""
