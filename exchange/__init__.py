"""The hub: centres, users, slides and their cases, access and sharing, annotations and
overlays, the audit trail. One subpackage per concept, lower ones never importing higher
ones (the import contracts in pyproject.toml check it):

    web/                      FastAPI only here: routes, dependencies, error mapping
    annotations/ overlays/    services on a slide the caller sees
    access/                   who may see and do what (policy, the fast path's caller memory)
    audit/ identity/          the hash-chained trail; accounts, API tokens, sessions, OIDC
    slides/                   catalogue, ingest, uploads, conversion
    core/                     models and migrations, errors, principal, centres
"""
