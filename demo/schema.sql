-- The demo's target tables (SQLite). syncd does not create target tables: a data team owns them.
-- syncd creates only its own positions table (syncd_positions) beside them.
CREATE TABLE IF NOT EXISTS dim_customer (
    customer_id INTEGER PRIMARY KEY,
    full_name   TEXT,
    email       TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER,
    total       NUMERIC,
    status      TEXT,
    deleted_at  TEXT
);
CREATE TABLE IF NOT EXISTS contact (
    contact_id     INTEGER PRIMARY KEY,
    email_masked   TEXT,
    customer_since DATE,
    source         TEXT
);
