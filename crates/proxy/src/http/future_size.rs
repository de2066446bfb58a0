//! Guards the size of the per-request future (issue 18): hyper moves a service's future a few
//! times before its first poll, and every move copies it whole, so the large upstream exchange
//! is boxed inside it. A regression shows here before it shows in callgrind.

#[cfg(test)]
mod tests {
    use std::future::Future;

    /// The size of the future an async fn of two arguments returns, without calling it.
    fn future_size<A, B, F: Future>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn forward_future_stays_small() {
        let size = future_size(super::super::forward);
        eprintln!("forward future: {size} bytes");
        // Debug build: 10,640 bytes with the exchange inline (the regression this guards
        // against), 2,480 with the static-file branch inline, and below 2 KiB with both boxed.
        assert!(
            size <= 2048,
            "forward()'s future is {size} bytes: box what made it grow"
        );
    }
}
