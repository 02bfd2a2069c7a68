//! omnigate
pub mod demo;
