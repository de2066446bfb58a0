//! The log folder: dated folders with LOG_RETENTION, `latest` symlink, reopen and flush (STUB —
//! owned by the error-page/logs work).
