-- Registry credentials, one row a host. secret is nonce || AES-GCM(password),
-- sealed with the key file's key and the host as additional data.
CREATE TABLE registry_credentials (
	host       TEXT PRIMARY KEY,
	username   TEXT NOT NULL,
	secret     BLOB NOT NULL,
	insecure   INTEGER NOT NULL,
	updated_at TEXT NOT NULL
) STRICT;
