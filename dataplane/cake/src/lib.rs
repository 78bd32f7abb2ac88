//! CAKE core (in progress).
