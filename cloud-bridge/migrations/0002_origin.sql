-- Version 2: scans reconciled from offline devices carry their origin (`<device>@<scanned-at
-- ms>`). The same offline scan reconciled at two nodes is two records but one scan: it counts
-- once in the per-ticket figures and in the double-entry judgement.

ALTER TABLE scans ADD COLUMN origin text;
CREATE INDEX scans_origin ON scans (event_id, ticket_id, origin) WHERE origin IS NOT NULL;
