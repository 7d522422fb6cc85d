-- message_id is '<campaign>:<step>:<channel>:<customer>:<occasion>': one message per campaign, step, customer and occasion.
CREATE TABLE IF NOT EXISTS message_outbox (
    message_id      TEXT        NOT NULL PRIMARY KEY,
    campaign_id     TEXT        NOT NULL,
    step_id         TEXT        NOT NULL,
    partition_date  DATE        NOT NULL,
    customer_id     BIGINT      NOT NULL,
    occasion        TEXT        NOT NULL,
    channel         TEXT        NOT NULL,
    recipient       TEXT        NOT NULL,
    subject         TEXT,
    body            TEXT        NOT NULL,
    template        TEXT        NOT NULL,
    variant         TEXT,
    send_at         TIMESTAMP   NOT NULL,  -- UTC; the intended local time is in the customer's zone
    batch_no        INTEGER     NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_message_outbox_partition ON message_outbox (campaign_id, partition_date);
CREATE INDEX IF NOT EXISTS ix_message_outbox_send_at ON message_outbox (send_at, batch_no);
