/// The PostgreSQL journal's schema: versioned migrations, applied by `PostgresJournalStore.prepare`
/// under an advisory lock. Docs/journal-postgres.md explains each table and function.
enum PostgresJournalSchema {
    /// Advisory lock class ("FLUX"): (lockClass, 0) serialises migrations.
    static let lockClass: Int32 = 0x464C_5558
    /// Advisory lock class of shards: (shardLockClass, shard) is held shared by every append
    /// that writes the shard and exclusively by `acquireShard`, until their commit.
    static let shardLockClass: Int32 = 0x464C_5559
    /// The SQLSTATE `flux_journal_check` raises when the batch is refused in part.
    static let refusedState = "FX001"

    /// SQL for a `timestamptz` from integer microseconds since 1970 (exact).
    static func timestamp(_ microseconds: String) -> String {
        "('epoch'::timestamptz + (\(microseconds)) * interval '1 microsecond')"
    }

    /// SQL for integer microseconds since 1970 from a `timestamptz` (exact).
    static func microseconds(_ column: String) -> String {
        "(extract(epoch FROM \(column)) * 1000000)::bigint"
    }

    /// Index = version - 1. Never edit a released migration: add one.
    static let migrations: [String] = [
        // 1: the journal.
        """
        CREATE TABLE events (
            shard integer NOT NULL,
            stream text NOT NULL,
            seq bigint NOT NULL,
            type text NOT NULL,
            data json NOT NULL,
            writer_epoch bigint NOT NULL,
            at timestamptz NOT NULL,
            closes boolean NOT NULL DEFAULT false,
            PRIMARY KEY (stream, seq)
        );
        CREATE TABLE shards (
            shard integer PRIMARY KEY,
            owner text NOT NULL,
            epoch bigint NOT NULL,
            acquired_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE streams (
            stream text PRIMARY KEY,
            shard integer NOT NULL,
            last_seq bigint NOT NULL,
            open boolean NOT NULL
        ) WITH (fillfactor = 80);
        CREATE INDEX streams_open ON streams (shard, stream) WHERE open;
        CREATE TABLE snapshots (
            shard integer NOT NULL,
            stream text NOT NULL,
            seq bigint NOT NULL,
            data json NOT NULL,
            at timestamptz NOT NULL,
            PRIMARY KEY (stream, seq)
        );
        CREATE TABLE idempotency_keys (
            shard integer NOT NULL,
            scope text NOT NULL,
            key text NOT NULL,
            request_hash text NOT NULL,
            stream text NOT NULL,
            at timestamptz NOT NULL,
            PRIMARY KEY (shard, scope, key)
        );

        CREATE FUNCTION flux_journal_acquire_shard(p_shard integer, p_owner text) RETURNS bigint
        LANGUAGE plpgsql AS $fn$
        DECLARE
            v_epoch bigint;
        BEGIN
            -- Waits for every append that holds the shard to commit; appends that start later
            -- wait for this hand-over to commit and then see the new epoch.
            PERFORM pg_advisory_xact_lock(\(shardLockClass), p_shard);
            INSERT INTO shards AS s (shard, owner, epoch, acquired_at) VALUES (p_shard, p_owner, 1, now())
            ON CONFLICT (shard) DO UPDATE SET epoch = s.epoch + 1, owner = excluded.owner, acquired_at = now()
            RETURNING s.epoch INTO v_epoch;
            RETURN v_epoch;
        END
        $fn$;

        CREATE FUNCTION flux_journal_append(
            p_shard integer[], p_stream text[], p_seq bigint[], p_type text[], p_data text[],
            p_epoch bigint[], p_at bigint[], p_closes boolean[])
        RETURNS TABLE (refused_stream text, is_fenced boolean, value_a bigint, value_b bigint)
        LANGUAGE plpgsql AS $fn$
        #variable_conflict use_column
        DECLARE
            v_streams text[];
            v_fenced boolean[];
            v_a bigint[];
            v_b bigint[];
        BEGIN
            -- Fencing, part 1: hold every shard of the batch (shared) until commit, so no
            -- hand-over of these shards commits between the check below and our commit.
            PERFORM pg_advisory_xact_lock_shared(\(shardLockClass), t.shard)
            FROM (SELECT DISTINCT u.shard FROM unnest(p_shard) AS u(shard) ORDER BY u.shard) AS t;

            -- The checks, on the narrow columns only. A new statement, so a new snapshot: it sees
            -- every hand-over committed before the locks were granted. Per refused stream:
            -- (stream, true, writer epoch, current epoch) or (stream, false, expected, got seq).
            WITH batch AS (
                SELECT * FROM unnest(p_shard, p_stream, p_seq, p_epoch) WITH ORDINALITY AS x(shard, stream, seq, epoch, ord)
            ), current_epochs AS (
                SELECT s.shard, s.epoch FROM shards s WHERE s.shard = ANY (p_shard)
            ), tails AS (
                -- Locks the batch's existing streams against other writers until commit (in one
                -- order, so two writers cannot deadlock here). Two writers creating one new stream
                -- collide on the events key instead; the client runs the batch again.
                SELECT st.stream, st.last_seq FROM streams st
                WHERE st.stream = ANY (p_stream) ORDER BY st.stream FOR UPDATE
            ), checked AS (
                SELECT x.stream, x.seq, x.epoch, x.ord, COALESCE(e.epoch, 0) AS current_epoch,
                    COALESCE(t.last_seq, 0) + row_number() OVER (PARTITION BY x.stream ORDER BY x.ord) AS expected
                FROM batch x
                LEFT JOIN current_epochs e ON e.shard = x.shard
                LEFT JOIN tails t ON t.stream = x.stream
            ), refused AS (
                -- Per stream, the first offending event; fencing before sequence.
                SELECT DISTINCT ON (c.stream) c.stream, c.epoch < c.current_epoch AS fenced,
                    CASE WHEN c.epoch < c.current_epoch THEN c.epoch ELSE c.expected END AS a,
                    CASE WHEN c.epoch < c.current_epoch THEN c.current_epoch ELSE c.seq END AS b
                FROM checked c
                WHERE c.epoch < c.current_epoch OR c.seq <> c.expected
                ORDER BY c.stream, (c.epoch < c.current_epoch) DESC, c.ord
            )
            SELECT array_agg(r.stream), array_agg(r.fenced), array_agg(r.a), array_agg(r.b)
            INTO v_streams, v_fenced, v_a, v_b
            FROM refused r;

            -- The accepted streams, straight from the arrays.
            INSERT INTO events (shard, stream, seq, type, data, writer_epoch, at, closes)
            SELECT x.shard, x.stream, x.seq, x.type, x.data::json, x.epoch, \(timestamp("x.at")), x.closes
            FROM unnest(p_shard, p_stream, p_seq, p_type, p_data, p_epoch, p_at, p_closes)
                AS x(shard, stream, seq, type, data, epoch, at, closes)
            WHERE v_streams IS NULL OR x.stream <> ALL (v_streams);

            INSERT INTO streams AS st (stream, shard, last_seq, open)
            SELECT DISTINCT ON (x.stream) x.stream, x.shard, x.seq, NOT x.closes
            FROM unnest(p_shard, p_stream, p_seq, p_closes) WITH ORDINALITY AS x(shard, stream, seq, closes, ord)
            WHERE v_streams IS NULL OR x.stream <> ALL (v_streams)
            ORDER BY x.stream, x.ord DESC
            ON CONFLICT (stream) DO UPDATE
            SET shard = excluded.shard, last_seq = excluded.last_seq, open = excluded.open;

            RETURN QUERY SELECT * FROM unnest(v_streams, v_fenced, v_a, v_b);
        END
        $fn$;
        """,

        // 2: the lean append. `streams` (a row version per stream per batch, its row locked by
        // every append) gives way to `open_streams`, the set of streams whose latest event does
        // not close them, written only when a stream opens or closes. A stream's tail is read
        // from the events key (one index probe per continuing stream); two writers that pass
        // the checks with the same tail collide on that key. Docs/journal-postgres.md, "Schema
        // version 2".
        """
        CREATE TABLE open_streams (
            stream text PRIMARY KEY,
            shard integer NOT NULL
        );
        CREATE INDEX open_streams_shard ON open_streams (shard, stream);
        INSERT INTO open_streams (stream, shard) SELECT stream, shard FROM streams WHERE open;
        DROP TABLE streams;
        -- What a node of the previous build (still running during an upgrade) reads in openStreams.
        CREATE VIEW streams AS SELECT stream, shard, true AS open FROM open_streams;

        -- The exact append (small batches; batches the COPY path cannot take; a batch whose COPY
        -- lost a race). Same arguments, result and refusals as in version 1, so a node of the
        -- previous build that calls it during an upgrade stays correct.
        CREATE OR REPLACE FUNCTION flux_journal_append(
            p_shard integer[], p_stream text[], p_seq bigint[], p_type text[], p_data text[],
            p_epoch bigint[], p_at bigint[], p_closes boolean[])
        RETURNS TABLE (refused_stream text, is_fenced boolean, value_a bigint, value_b bigint)
        -- Generic plans: a custom plan per call (what `auto` keeps choosing for these
        -- statements) cost more to plan than to run, about 3x the whole call for a small batch.
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
        #variable_conflict use_column
        DECLARE
            v_streams text[];
            v_fenced boolean[];
            v_a bigint[];
            v_b bigint[];
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(\(shardLockClass), t.shard)
            FROM (SELECT DISTINCT u.shard FROM unnest(p_shard) AS u(shard) ORDER BY u.shard) AS t;

            -- A new statement, so a new snapshot (sees every hand-over committed before the
            -- locks were granted). Per refused stream: (stream, true, writer epoch, current
            -- epoch) or (stream, false, expected, got seq); the first offending event, fencing
            -- before sequence. Accepted streams that open or close update `open_streams`.
            WITH batch AS (
                SELECT * FROM unnest(p_shard, p_stream, p_seq, p_epoch, p_closes) WITH ORDINALITY
                    AS x(shard, stream, seq, epoch, closes, ord)
            ), current_epochs AS (
                SELECT s.shard, s.epoch FROM shards s WHERE s.shard = ANY (p_shard)
            ), tails AS (
                -- Each stream's last stored event: one probe of the events key, from its end.
                SELECT d.stream, t.seq, t.closes
                FROM (SELECT DISTINCT b.stream FROM batch b) AS d
                CROSS JOIN LATERAL (
                    SELECT e.seq, e.closes FROM events e WHERE e.stream = d.stream ORDER BY e.seq DESC LIMIT 1
                ) AS t
            ), checked AS (
                SELECT x.stream, x.shard, x.seq, x.epoch, x.ord, x.closes, COALESCE(e.epoch, 0) AS current_epoch,
                    COALESCE(t.seq, 0) + row_number() OVER (PARTITION BY x.stream ORDER BY x.ord) AS expected,
                    t.seq IS NOT NULL AND NOT t.closes AS was_open
                FROM batch x
                LEFT JOIN current_epochs e ON e.shard = x.shard
                LEFT JOIN tails t ON t.stream = x.stream
            ), refused AS (
                SELECT DISTINCT ON (c.stream) c.stream, c.epoch < c.current_epoch AS fenced,
                    CASE WHEN c.epoch < c.current_epoch THEN c.epoch ELSE c.expected END AS a,
                    CASE WHEN c.epoch < c.current_epoch THEN c.current_epoch ELSE c.seq END AS b
                FROM checked c
                WHERE c.epoch < c.current_epoch OR c.seq <> c.expected
                ORDER BY c.stream, (c.epoch < c.current_epoch) DESC, c.ord
            ), last_events AS (
                SELECT DISTINCT ON (c.stream) c.stream, c.shard, c.was_open, NOT c.closes AS now_open
                FROM checked c
                WHERE NOT EXISTS (SELECT 1 FROM refused r WHERE r.stream = c.stream)
                ORDER BY c.stream, c.ord DESC
            ), opened AS (
                INSERT INTO open_streams (stream, shard)
                SELECT l.stream, l.shard FROM last_events l WHERE l.now_open AND NOT l.was_open
                ORDER BY l.stream
                ON CONFLICT (stream) DO NOTHING
            ), closed AS (
                DELETE FROM open_streams
                WHERE stream = ANY (ARRAY(SELECT l.stream FROM last_events l WHERE l.was_open AND NOT l.now_open))
            )
            SELECT array_agg(r.stream), array_agg(r.fenced), array_agg(r.a), array_agg(r.b)
            INTO v_streams, v_fenced, v_a, v_b
            FROM refused r;

            -- The accepted streams, in stream order (two racing writers meet in one order).
            INSERT INTO events (shard, stream, seq, type, data, writer_epoch, at, closes)
            SELECT x.shard, x.stream, x.seq, x.type, x.data::json, x.epoch, \(timestamp("x.at")), x.closes
            FROM unnest(p_shard, p_stream, p_seq, p_type, p_data, p_epoch, p_at, p_closes) WITH ORDINALITY
                AS x(shard, stream, seq, type, data, epoch, at, closes, ord)
            WHERE v_streams IS NULL OR x.stream <> ALL (v_streams)
            ORDER BY x.stream, x.ord;

            RETURN QUERY SELECT * FROM unnest(v_streams, v_fenced, v_a, v_b);
        END
        $fn$;

        -- The checks of the COPY path, run in its transaction right after the COPY of the
        -- batch's events (the client has grouped them by stream, each stream's events
        -- consecutive). p_shards / p_epochs: each shard of the batch (ascending) with the lowest
        -- writer epoch of its events; p_tails / p_tail_seqs: each stream whose events start
        -- after seq 1, with the seq just before its first; p_open / p_open_shards: each stream
        -- whose last event does not close it; p_close: each stream that starts after seq 1 and
        -- whose last event closes it. Takes the shard locks, then raises \(refusedState) when an
        -- event is fenced or a tail is not stored: the client rolls back and runs the batch
        -- through flux_journal_append, which names the refused streams. Otherwise updates
        -- `open_streams`. A stream that starts at seq 1 but already has events failed the COPY
        -- on the events key before this runs.
        CREATE FUNCTION flux_journal_check(
            p_shards integer[], p_epochs bigint[], p_tails text[], p_tail_seqs bigint[],
            p_open text[], p_open_shards integer[], p_close text[])
        RETURNS void
        -- Generic plans: a custom plan per call (what `auto` keeps choosing for these
        -- statements) cost more to plan than to run, about 3x the whole call for a small batch.
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(\(shardLockClass), t.shard)
            FROM (SELECT u.shard FROM unnest(p_shards) AS u(shard) ORDER BY u.shard) AS t;

            -- New statements, so new snapshots: they see every hand-over committed before the
            -- locks were granted.
            IF EXISTS (
                SELECT 1 FROM unnest(p_shards, p_epochs) AS x(shard, epoch)
                JOIN shards s ON s.shard = x.shard WHERE x.epoch < s.epoch
            ) THEN
                RAISE EXCEPTION 'journal batch fenced' USING ERRCODE = '\(refusedState)';
            END IF;
            IF cardinality(p_tails) > 0 AND (
                SELECT count(*) FROM unnest(p_tails, p_tail_seqs) AS t(stream, seq)
                WHERE EXISTS (SELECT 1 FROM events e WHERE e.stream = t.stream AND e.seq = t.seq)
            ) <> cardinality(p_tails) THEN
                RAISE EXCEPTION 'journal batch leaves a gap' USING ERRCODE = '\(refusedState)';
            END IF;

            IF cardinality(p_open) > 0 THEN
                INSERT INTO open_streams (stream, shard)
                SELECT * FROM unnest(p_open, p_open_shards) ON CONFLICT (stream) DO NOTHING;
            END IF;
            IF cardinality(p_close) > 0 THEN
                DELETE FROM open_streams WHERE stream = ANY (p_close);
            END IF;
        END
        $fn$;
        """,
    ]
}
