-- Groups a user belongs to, for access rules (forward authentication): a group is a
-- name, kept only as its members' rows.
CREATE TABLE user_groups (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name    TEXT    NOT NULL,
    PRIMARY KEY (user_id, name)
);
