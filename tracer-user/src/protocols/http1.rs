//! HTTP/1.x (placeholder until the parser lands).
use super::{ParseOutput, Parser, ParserOptions, Side};

pub fn detect(_data: &[u8]) -> Option<Side> {
    None
}

pub struct Http1Parser;

impl Http1Parser {
    pub fn new(_options: ParserOptions) -> Self {
        Http1Parser
    }
}

impl Parser for Http1Parser {
    fn on_data(&mut self, _: Side, _: u64, _: &[u8], _: &mut ParseOutput) {}
    fn on_gap(&mut self, _: Side, _: u64, _: usize, _: &mut ParseOutput) {}
    fn on_close(&mut self, _: u64, _: &mut ParseOutput) {}
}
