//! Schema migrations, applied in order; `PRAGMA user_version` counts how many ran.
//! Never edit or reorder an entry that has shipped: append a new one.
//!
//! The tables mirror 2015 Nodepool's (`dib_image`, `snapshot_image`, `node`, `subnode`) with
//! the same states; times are Unix seconds. Added for the one-shot design: a node's launch
//! phase, last error, host keys, the image it was booted from, and who acquired it.

pub const MIGRATIONS: &[&str] = &[
    // 1: the 2015 tables plus what the one-shot lifecycle needs.
    r#"
    CREATE TABLE dib_image (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        image_name  TEXT NOT NULL,
        filename    TEXT,
        version     INTEGER NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('building', 'ready', 'delete')),
        state_time  INTEGER NOT NULL,
        last_error  TEXT
    );
    CREATE INDEX dib_image_by_name ON dib_image (image_name, state);

    CREATE TABLE snapshot_image (
        id                  INTEGER PRIMARY KEY AUTOINCREMENT,
        provider_name       TEXT NOT NULL,
        image_name          TEXT NOT NULL,
        hostname            TEXT,
        version             INTEGER,
        external_id         TEXT,
        server_external_id  TEXT,
        dib_image_id        INTEGER REFERENCES dib_image (id) ON DELETE SET NULL,
        state               TEXT NOT NULL CHECK (state IN ('building', 'ready', 'delete')),
        state_time          INTEGER NOT NULL,
        phase               TEXT,
        last_error          TEXT
    );
    CREATE INDEX snapshot_image_by_provider ON snapshot_image (provider_name, image_name, state);

    CREATE TABLE node (
        id                  INTEGER PRIMARY KEY AUTOINCREMENT,
        provider_name       TEXT NOT NULL,
        label_name          TEXT NOT NULL,
        target_name         TEXT NOT NULL,
        manager_name        TEXT,
        hostname            TEXT NOT NULL,
        nodename            TEXT,
        external_id         TEXT,
        az                  TEXT,
        ip                  TEXT,
        ip_private          TEXT,
        state               TEXT NOT NULL
            CHECK (state IN ('building', 'test', 'ready', 'used', 'hold', 'delete')),
        state_time          INTEGER NOT NULL,
        comment             TEXT,
        launch_phase        TEXT,
        launch_time         INTEGER,
        last_error          TEXT,
        host_keys           TEXT,
        snapshot_image_id   INTEGER REFERENCES snapshot_image (id) ON DELETE SET NULL,
        image_external_id   TEXT,
        owner               TEXT
    );
    CREATE INDEX node_by_state ON node (state);
    CREATE INDEX node_by_provider ON node (provider_name, label_name);

    CREATE TABLE subnode (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        node_id       INTEGER NOT NULL REFERENCES node (id) ON DELETE CASCADE,
        hostname      TEXT NOT NULL,
        nodename      TEXT,
        external_id   TEXT,
        ip            TEXT,
        ip_private    TEXT,
        state         TEXT NOT NULL
            CHECK (state IN ('building', 'test', 'ready', 'used', 'hold', 'delete')),
        state_time    INTEGER NOT NULL,
        launch_phase  TEXT,
        last_error    TEXT,
        host_keys     TEXT
    );
    CREATE INDEX subnode_by_node ON subnode (node_id);
    "#,
    // 2: what the reconciler remembers between runs, since no process lives between them.
    r#"
    -- Marks the servers this installation creates, so a leak is told from a stranger's server.
    CREATE TABLE installation (id TEXT NOT NULL);
    INSERT INTO installation (id) VALUES (lower(hex(randomblob(16))));

    -- When launch_phase last changed (boot-timeout counts from the server turning ACTIVE).
    ALTER TABLE node ADD COLUMN phase_time INTEGER;
    ALTER TABLE subnode ADD COLUMN phase_time INTEGER;

    -- Repeated launch failures, and quota refusals (label_name ''), back off per provider.
    CREATE TABLE cooldown (
        provider_name  TEXT NOT NULL,
        label_name     TEXT NOT NULL,
        reason         TEXT NOT NULL,
        failures       INTEGER NOT NULL,
        until          INTEGER NOT NULL,
        last_error     TEXT,
        PRIMARY KEY (provider_name, label_name)
    );

    -- The last pass's allocation per label and provider: fairness history, and what
    -- blocked the label, for `status`.
    CREATE TABLE allocation (
        label_name     TEXT NOT NULL,
        provider_name  TEXT NOT NULL,
        deficit        INTEGER NOT NULL,
        granted        INTEGER NOT NULL,
        blocker        TEXT,
        time           INTEGER NOT NULL,
        PRIMARY KEY (label_name, provider_name)
    );

    -- Servers carrying this installation's metadata but no row: deleted only when seen on
    -- two passes, older than a grace period.
    CREATE TABLE leak (
        provider_name  TEXT NOT NULL,
        server_id      TEXT NOT NULL,
        first_seen     INTEGER NOT NULL,
        last_seen      INTEGER NOT NULL,
        PRIMARY KEY (provider_name, server_id)
    );

    -- The run journal: one row per reconcile/cleanup/check run.
    CREATE TABLE run (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        command   TEXT NOT NULL,
        started   INTEGER NOT NULL,
        finished  INTEGER,
        summary   TEXT
    );
    "#,
    // 3: the store keeps facts, the planner decides (`plan/policy.rs`). A cooldown is "N
    // failures, the last at T"; when it ends is policy, so `until` becomes the last failure's
    // time (for rows of a running cooldown: its end minus the schedule's wait). Blockers are
    // stored as JSON of `model::pass::Blocker`; the free-text rows are one pass old.
    r#"
    ALTER TABLE cooldown ADD COLUMN last_time INTEGER NOT NULL DEFAULT 0;
    UPDATE cooldown SET last_time = until - CASE
        WHEN label_name = '' THEN 60
        WHEN failures < 2 THEN 0
        ELSE min(600, 10 << min(failures - 2, 16)) END;
    ALTER TABLE cooldown DROP COLUMN until;
    DELETE FROM allocation;
    "#,
    // 4: floating IPs by id. The intent (launch phase floating-ip) is written before the
    // allocation and the IP's id right after it, so an IP is released by its id, never
    // looked up by address (an address can be handed to another server).
    r#"
    ALTER TABLE node ADD COLUMN floating_ip_id TEXT;
    ALTER TABLE subnode ADD COLUMN floating_ip_id TEXT;
    "#,
    // 5: Keystone tokens kept between runs, one per provider, under a hash of the auth
    // settings they were issued for, with the catalog that came with them and their expiry.
    // Cloud images and flavors, cached with the time they were listed.
    r#"
    CREATE TABLE token (
        provider    TEXT PRIMARY KEY,
        auth_hash   TEXT NOT NULL,
        token       TEXT NOT NULL,
        expires_at  INTEGER NOT NULL,
        catalog     TEXT NOT NULL
    );
    CREATE TABLE cloud_listing (
        provider    TEXT NOT NULL,
        kind        TEXT NOT NULL,
        listed_at   INTEGER NOT NULL,
        items       TEXT NOT NULL,
        PRIMARY KEY (provider, kind)
    );
    "#,
    // 6: a diskimage's last failed build (its row and files are removed; this says why
    // there is no image, for `status`), cleared by a build that succeeds.
    r#"
    CREATE TABLE build_failure (
        image_name  TEXT PRIMARY KEY,
        time        INTEGER NOT NULL,
        log         TEXT NOT NULL
    );
    "#,
    // 7: snapshot images are made by a state machine across runs (`image::snapshot`): the
    // template server's address and host keys, the keypair generated for it (with its
    // private half until the server is gone), when the phase last changed, and its log. A
    // provider image's last failed attempt (the row is removed; this says why, for `status`).
    // Launches from each image: failed ones in a row, and whether one ever became ready, so a
    // bad new image is rolled back from (its `last_error` says why).
    r#"
    -- A build's builder process (group), so one a killed run left running is stopped.
    ALTER TABLE dib_image ADD COLUMN builder_pid INTEGER;
    ALTER TABLE snapshot_image ADD COLUMN failed_launches INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE snapshot_image ADD COLUMN launched_ok INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE snapshot_image ADD COLUMN phase_time INTEGER;
    ALTER TABLE snapshot_image ADD COLUMN ip TEXT;
    ALTER TABLE snapshot_image ADD COLUMN host_keys TEXT;
    ALTER TABLE snapshot_image ADD COLUMN keypair_name TEXT;
    ALTER TABLE snapshot_image ADD COLUMN private_key TEXT;
    ALTER TABLE snapshot_image ADD COLUMN log TEXT;
    -- Images carrying this installation's properties but no row (uploads or snapshots of a
    -- killed run), deleted as leaked servers are: seen twice, past the grace period.
    CREATE TABLE image_leak (
        provider_name  TEXT NOT NULL,
        image_id       TEXT NOT NULL,
        first_seen     INTEGER NOT NULL,
        last_seen      INTEGER NOT NULL,
        PRIMARY KEY (provider_name, image_id)
    );
    CREATE TABLE image_failure (
        provider_name  TEXT NOT NULL,
        image_name     TEXT NOT NULL,
        time           INTEGER NOT NULL,
        error          TEXT NOT NULL,
        log            TEXT,
        PRIMARY KEY (provider_name, image_name)
    );
    "#,
    // 8: handing nodes to pipelines that are not Jenkins (`acquire`). A request of `acquire
    // --wait` is demand above min-ready until it is met, withdrawn, or expires (its process
    // died).
    r#"
    CREATE TABLE node_request (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        label_name  TEXT NOT NULL,
        count       INTEGER NOT NULL,
        owner       TEXT NOT NULL,
        created     INTEGER NOT NULL,
        expires     INTEGER NOT NULL
    );
    "#,
    // 9: the run journal covers every command that changes something, and says what `history`
    // shows: the command line, the configuration's hash, how long the lock took, what the run
    // planned and how each action ended, the API calls per route, its duration and exit
    // status, and the signal that stopped it. A row without `finished` is a run that was
    // killed.
    r#"
    ALTER TABLE run ADD COLUMN argv TEXT;
    ALTER TABLE run ADD COLUMN config_hash TEXT;
    ALTER TABLE run ADD COLUMN lock_wait REAL;
    ALTER TABLE run ADD COLUMN exit_status INTEGER;
    ALTER TABLE run ADD COLUMN interrupted TEXT;
    ALTER TABLE run ADD COLUMN seconds REAL;
    ALTER TABLE run ADD COLUMN api_calls TEXT;
    ALTER TABLE run ADD COLUMN actions TEXT;
    CREATE INDEX run_by_start ON run (started);
    "#,
];
