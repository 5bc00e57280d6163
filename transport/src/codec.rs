//! Frames of the `/gatemesh/sync/2` protocol: a big-endian u32 length, then that many bytes (a
//! kind byte and a sync message or a bulletin). A frame over [`SYNC_FRAME_BYTES_MAX`] is an
//! error before any byte of it is read, so a peer cannot make us allocate more.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use std::io;

/// The protocol name.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/gatemesh/sync/2");
/// Largest sync frame, either way: a sync message carries a bounded batch of changes (the
/// ledger's `sync::SYNC_MESSAGE_BYTES_MAX`), however large the gap it repairs.
pub const SYNC_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024 + 1024;

/// The sync codec. `refused` counts frames refused while reading (oversized, cut short): the
/// request-response layer drops those without an event, so the node reads the count here.
#[derive(Clone, Debug, Default)]
pub struct SyncCodec {
    pub refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SyncCodec {
    async fn read_counted<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Vec<u8>> {
        let r = read_frame(io).await;
        if r.is_err() {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > SYNC_FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sync frame of {len} bytes is over {SYNC_FRAME_BYTES_MAX}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8]) -> io::Result<()> {
    if data.len() > SYNC_FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "sync frame too large to send",
        ));
    }
    io.write_all(&(data.len() as u32).to_be_bytes()).await?;
    io.write_all(data).await?;
    io.close().await
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        self.read_counted(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        self.read_counted(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_oversized_or_cut_frames_are_errors() {
        futures::executor::block_on(async {
            let mut out = Cursor::new(Vec::new());
            write_frame(&mut out, b"hello").await.unwrap();
            let mut input = Cursor::new(out.into_inner());
            assert_eq!(read_frame(&mut input).await.unwrap(), b"hello");
            let mut huge = Cursor::new(((SYNC_FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec());
            assert_eq!(
                read_frame(&mut huge).await.unwrap_err().kind(),
                io::ErrorKind::InvalidData
            );
            let mut cut = Cursor::new(vec![0, 0, 0, 9, 1, 2]);
            assert!(read_frame(&mut cut).await.is_err());
        });
    }
}
