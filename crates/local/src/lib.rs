//! lull's embedded backend: replicas as supervised child processes
