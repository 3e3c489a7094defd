package api

import (
	"context"
	"errors"
	"fmt"
	"io"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// ImportChunkBytes is the size of the chunks ImportArchive sends: what
// one request may carry, less room for the rest of the message.
const ImportChunkBytes = MaxRequestBytes - 1<<10

// ErrArchiveRead wraps an error of ImportArchive's reader.
var ErrArchiveRead = errors.New("reading the archive")

// ImportArchive is the client side of ImportImage: it sends first, then
// what r gives until io.EOF (node, if set, in the first chunk), calls
// progress (if not nil) with each node's progress as it comes, and
// returns the result. An error reading r ends the import on the agent's
// side too and is returned wrapped in ErrArchiveRead.
func ImportArchive(ctx context.Context, c apiv1.WarrenClient, node string, first []byte, r io.Reader, progress func(*apiv1.NodeImport)) (*apiv1.ImportImageResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.ImportImage(ctx)
	if err != nil {
		return nil, err
	}
	type answer struct {
		resp *apiv1.ImportImageResponse
		err  error
	}
	// The answers are read as the archive goes, so that the agent's
	// progress never waits on this side.
	done := make(chan answer, 1)
	go func() {
		for {
			p, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				err = errors.New("image import: the agent ended the call without a result")
			}
			switch {
			case err != nil:
				done <- answer{err: err}
				return
			case p.GetResult() != nil:
				done <- answer{resp: p.GetResult()}
				return
			case p.GetNode() != nil && progress != nil:
				progress(p.GetNode())
			}
		}
	}()
	if err := sendArchive(stream, node, first, r); err != nil {
		cancel()
		<-done
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	a := <-done
	return a.resp, a.err
}

// sendArchive sends first, then r's data, in chunks; it stops without an
// error when the agent ends the call (the answer says why).
func sendArchive(stream apiv1.Warren_ImportImageClient, node string, first []byte, r io.Reader) error {
	buf := make([]byte, ImportChunkBytes)
	chunk := first
	for {
		if len(chunk) > 0 {
			// Send encodes the message before it returns: buf can be reused.
			if err := stream.Send(&apiv1.ImportImageChunk{Data: chunk, Node: node}); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			node = ""
		}
		n, err := io.ReadFull(r, buf)
		chunk = buf[:n]
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			if n == 0 {
				return nil
			}
		case err != nil:
			return fmt.Errorf("%w: %w", ErrArchiveRead, err)
		}
	}
}
