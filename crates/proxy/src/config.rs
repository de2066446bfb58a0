//! Proxy configuration (placeholder)
