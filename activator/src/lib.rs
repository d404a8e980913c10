//! lull's data plane: routing, parking queue, wake, proxying, request stats
