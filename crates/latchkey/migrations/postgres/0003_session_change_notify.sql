-- Every change to a session row is announced on channel latchkey_sessions (payload: the
-- old id, or the new one for an insert), so caches in other processes drop their copy
-- (latchkey::store::CachedStore::with_feed). The trigger covers every writer: servers,
-- the command line, expiry sweeps.
CREATE OR REPLACE FUNCTION latchkey_session_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('latchkey_sessions', NEW.id);
    ELSE
        PERFORM pg_notify('latchkey_sessions', OLD.id);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS sessions_changed ON sessions;
CREATE TRIGGER sessions_changed AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION latchkey_session_changed();
