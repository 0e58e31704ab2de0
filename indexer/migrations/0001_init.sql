-- convmem schema v1: conversations, utterances, and the change feed `seq`.
CREATE EXTENSION IF NOT EXISTS vector;

-- One sequence for every change (upsert or tombstone). Values are taken only while holding
-- the change-feed advisory lock, so they commit in order and a tailer never skips one.
CREATE SEQUENCE IF NOT EXISTS change_seq;

CREATE TABLE conversations (
    tenant      text        NOT NULL,
    id          text        NOT NULL,
    user_id     text,
    agent_id    text,
    started_at  timestamptz,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    seq         bigint      NOT NULL,
    deleted     boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX conversations_user ON conversations (tenant, user_id);

CREATE TABLE utterances (
    uid             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          text        NOT NULL,
    id              text        NOT NULL,
    conversation_id text        NOT NULL,
    turn            integer     NOT NULL,
    speaker         text        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('user', 'agent', 'other')),
    text            text        NOT NULL,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    source          text        NOT NULL DEFAULT 'text' CHECK (source IN ('text', 'asr')),
    asr_confidence  real,
    embedding       vector,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    seq             bigint      NOT NULL,
    deleted         boolean     NOT NULL DEFAULT false,
    UNIQUE (tenant, id),
    FOREIGN KEY (tenant, conversation_id) REFERENCES conversations (tenant, id)
);
CREATE INDEX utterances_seq ON utterances (seq);
CREATE INDEX utterances_conversation ON utterances (tenant, conversation_id, started_at, turn);
