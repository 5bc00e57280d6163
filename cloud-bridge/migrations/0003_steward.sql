-- gatemesh HQ schema, version 3: what stewards add at the gate.

-- Check-ins made by hand. A steward who finds a ticket by search (the code would not scan)
-- checks it in by hand; its record carries the origin `manual:<device>@<ms>`. The column says
-- so for every row, old and new.
ALTER TABLE scans ADD COLUMN manual boolean
    GENERATED ALWAYS AS (coalesce(origin LIKE 'manual:%', false)) STORED;

-- The guest list as the organizer's signed manifest gives it: who holds each ticket. Written
-- by every import and by the live bridge as it starts; a newer manifest replaces a row.
CREATE TABLE attendees (
    event_id   text NOT NULL REFERENCES events,
    ticket_id  text NOT NULL,
    tier       text NOT NULL,
    status     text NOT NULL,
    name       text,
    order_ref  text,
    email      text,
    notes      text,
    attention  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (event_id, ticket_id)
);
CREATE INDEX attendees_order ON attendees (event_id, order_ref);
