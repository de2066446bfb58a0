//! The inspector page: one HTML file (styles and script inline) embedded in the binary.

/// `GET /` of the inspector listener.
pub const PAGE: &str = include_str!("page.html");
