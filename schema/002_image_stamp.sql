-- 002_image_stamp.sql — the stat fingerprint of each stored image file (PRAGMA user_version 2).
-- Written when an image is stored or re-verified; a file whose inode no longer matches it is
-- re-hashed before any run uses it, and quarantined when its content no longer matches its digest.
ALTER TABLE images ADD COLUMN stamp TEXT;
