-- gatemesh HQ schema, version 1: what the mesh recorded, merged exactly once.

CREATE TABLE events (
    event_id      text PRIMARY KEY,
    name          text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    event_id  text NOT NULL REFERENCES events,
    device_id text NOT NULL,
    name      text NOT NULL,
    role      text NOT NULL,
    PRIMARY KEY (event_id, device_id)
);

-- Per-ticket figures, kept as the seed's reconcile keeps them: first and last scanned with
-- LEAST / GREATEST, counters only ever increased by scans not seen before.
CREATE TABLE tickets (
    event_id         text NOT NULL REFERENCES events,
    ticket_id        text NOT NULL,
    tier             text NOT NULL,
    first_scanned_at timestamptz,
    last_scanned_at  timestamptz,
    scan_count       integer NOT NULL DEFAULT 0,
    admit_count      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, ticket_id)
);

-- One row per signed scan record. scan_id is `<device>-<counter>`, unique within an event.
CREATE TABLE scans (
    event_id    text NOT NULL REFERENCES events,
    scan_id     text NOT NULL,
    ticket_id   text NOT NULL,
    device_id   text NOT NULL,
    tier        text NOT NULL,
    gate        text NOT NULL,
    zone        text NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('in', 'out')),
    verdict     text NOT NULL CHECK (verdict IN ('admit', 'deny', 'annul')),
    reason      text NOT NULL,
    hlc         bigint NOT NULL,
    device_time timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    annuls      text,
    PRIMARY KEY (event_id, scan_id)
);
CREATE INDEX scans_ticket ON scans (event_id, ticket_id);
CREATE INDEX scans_time ON scans (event_id, device_time);

-- Double entries: each admit beyond what the ticket's policy allowed, with the legitimate
-- entries it came on top of. Replaced per ticket when the ledger's replay changes its mind
-- (a late record with an earlier clock, an annul).
CREATE TABLE conflicts (
    event_id      text NOT NULL REFERENCES events,
    ticket_id     text NOT NULL,
    scan_id       text NOT NULL,
    kind          text NOT NULL,
    entry_scan_ids text[] NOT NULL,
    detected_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, scan_id)
);
CREATE INDEX conflicts_ticket ON conflicts (event_id, ticket_id);

-- Every import or live flush: what it brought and what it refused.
CREATE TABLE bridge_runs (
    id          bigserial PRIMARY KEY,
    event_id    text NOT NULL REFERENCES events,
    source      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    records     bigint NOT NULL DEFAULT 0,
    scans_added bigint NOT NULL DEFAULT 0,
    rejected    bigint NOT NULL DEFAULT 0
);

CREATE VIEW admits_by_hour AS
    SELECT event_id, date_trunc('hour', device_time) AS hour, count(*) AS admits
    FROM scans WHERE verdict = 'admit' AND direction = 'in'
    GROUP BY 1, 2;

CREATE VIEW admits_by_gate AS
    SELECT event_id, gate, zone, count(*) AS admits
    FROM scans WHERE verdict = 'admit' AND direction = 'in'
    GROUP BY 1, 2, 3;

CREATE VIEW admits_by_tier AS
    SELECT event_id, tier, count(*) AS admits, count(DISTINCT ticket_id) AS tickets
    FROM scans WHERE verdict = 'admit' AND direction = 'in'
    GROUP BY 1, 2;

CREATE VIEW denials_by_reason AS
    SELECT event_id, reason, count(*) AS denials
    FROM scans WHERE verdict = 'deny'
    GROUP BY 1, 2;

CREATE VIEW double_entries AS
    SELECT c.event_id, c.ticket_id, c.scan_id, c.kind, c.entry_scan_ids,
           s.gate, s.device_id, s.device_time, c.detected_at
    FROM conflicts c
    JOIN scans s ON s.event_id = c.event_id AND s.scan_id = c.scan_id;
