-- accrual_id is '<campaign>:<step>:<customer>:<occasion>': deterministic, so a re-run can never add a second one.
CREATE TABLE IF NOT EXISTS bonus_accruals (
    accrual_id      TEXT            NOT NULL PRIMARY KEY,
    campaign_id     TEXT            NOT NULL,
    step_id         TEXT            NOT NULL,
    partition_date  DATE            NOT NULL,
    customer_id     BIGINT          NOT NULL,
    occasion        TEXT            NOT NULL,
    amount          NUMERIC(14, 2)  NOT NULL,
    accrued_at      TIMESTAMP       NOT NULL,  -- UTC
    expires_at      TIMESTAMP,                 -- UTC
    legal_entity    TEXT            NOT NULL,
    reason          TEXT            NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_bonus_accruals_partition ON bonus_accruals (campaign_id, partition_date);
CREATE INDEX IF NOT EXISTS ix_bonus_accruals_customer ON bonus_accruals (customer_id, accrued_at);
