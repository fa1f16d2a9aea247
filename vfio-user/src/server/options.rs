//! [`ServerOptions`]: the tunables of a server.

use std::time::Duration;

use crate::dma::DEFAULT_DMA_TIMEOUT;
use crate::wire::DmaRwLayout;

/// Tunables of a server.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Byte layout of DMA_READ/DMA_WRITE messages (see [`DmaRwLayout`]).
    pub dma_layout: DmaRwLayout,
    /// How long a device's DMA message waits for the client's reply.
    pub dma_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            dma_layout: DmaRwLayout::default(),
            dma_timeout: DEFAULT_DMA_TIMEOUT,
        }
    }
}
