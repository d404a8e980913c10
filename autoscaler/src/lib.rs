//! lull's control plane: the decision engine and the scaling loop
