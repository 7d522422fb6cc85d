-- The global control group, per period: who was held out of every campaign on any past date.
CREATE TABLE IF NOT EXISTS global_control_group (
    period_start    DATE        NOT NULL,
    period_end      DATE        NOT NULL,
    customer_id     BIGINT      NOT NULL,
    PRIMARY KEY (period_start, customer_id)
);
