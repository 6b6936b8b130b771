-- Version 10: per-agent credentials.  An agent enrolls once with the shared
-- agent token (POST /agent/enroll) and is given a token of its own; from then
-- on the server knows which agent is speaking.  Only the token's sha256 is
-- kept: a copy of this file gives no one a working token.
CREATE TABLE agent_credentials (
    name        TEXT PRIMARY KEY,  -- the agent's name (its `client`)
    token_hash  TEXT UNIQUE,       -- hex sha256 of its token; NULL for a name revoked before it enrolled
    enrolled_at TEXT,
    revoked_at  TEXT               -- set: its token gets 401 and the shared token may not speak for it
);
