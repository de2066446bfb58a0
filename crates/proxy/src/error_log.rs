//! error.log: warnings and errors as a tracing layer (STUB — owned by the error-page/logs work).
