-- convmem schema v3: the store's identity. An index snapshot records the identity of the store
-- it was built from and is loaded only into that store: a snapshot of another database, or of
-- this one before a restore (`convmem restore` gives the restored store a new identity), is
-- ahead of or beside the restored change feed, and loading it would show rows the store does not
-- hold and skip the first writes after the restore. One row, made here.
CREATE TABLE store_identity (
    singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    store_id      uuid        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    restored_from uuid,
    restored_at   timestamptz
);
INSERT INTO store_identity (store_id) VALUES (gen_random_uuid());
