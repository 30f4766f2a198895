"""Files that prove who is who: signing keys and certificates, re-read when they change."""
