CREATE TABLE polls (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    question   text NOT NULL CHECK (length(question) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE choices (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    poll_id bigint NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    text    text NOT NULL CHECK (length(text) BETWEEN 1 AND 200),
    votes   integer NOT NULL DEFAULT 0 CHECK (votes >= 0)
);

CREATE INDEX choices_poll_id_idx ON choices (poll_id);
