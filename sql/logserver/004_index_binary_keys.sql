-- Search keys are compared byte for byte (they are lower-cased before they
-- are stored and before they are looked up) and may be up to 2048 bytes:
-- a VARCHAR in the database's character set could refuse or, with
-- INSERT IGNORE, silently truncate a key the log had already acknowledged.
-- The logserver refuses longer keys before it acknowledges an entry.
ALTER TABLE log_index MODIFY lookup_key VARBINARY(2048) NOT NULL;
