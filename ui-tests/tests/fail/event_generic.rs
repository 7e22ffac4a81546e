use jetflow::prelude::*;

#[event(version = "v1")]
pub struct Envelope<T> {
    pub payload: T,
}

fn main() {}
