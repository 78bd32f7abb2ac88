//! Frame parser (in progress).
