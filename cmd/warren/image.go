package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// importChunkSize is how much of the archive each ImportImage message
// carries: just under 1 MiB, as the agent refuses a request (the message
// with its framing) over api.MaxRequestBytes.
const importChunkSize = api.ImportChunkBytes

func newImageCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the images on the workers",
		Long: `Manage the images in the workers' runtimes: "image import" loads an image
archive where no registry can be reached.`,
		Example: `  warren image import busybox.tar`,
	}
	makeGroup(cmd)
	cmd.AddCommand(newImageImportCmd(g), newImageListCmd(g))
	return cmd
}

type imageImportOptions struct {
	g    *globalOptions
	node string
}

func newImageImportCmd(g *globalOptions) *cobra.Command {
	o := &imageImportOptions{g: g}
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Load an image archive into every worker",
		Long: `Load an image archive (an OCI layout or "docker save" tarball) into the runtime
of every ready worker, for sites without a registry; --node loads it into one
node only. On a manager the archive goes to every worker through the
manager's connections to them; on a worker-only node, into its own runtime.
FILE "-" reads the archive from standard input.

Each node's progress is printed on stderr as it goes ("edge-1: 12MiB sent",
then "edge-1: done, 48MiB" or "edge-2: failed: WHY"). At the end it prints
the images the archive held (REF, DIGEST, SIZE), then one line per node: the node that took them, or the node that failed and why (the command
then exits with status 1). -o json prints the API's ImportImageResponse. The
archive is streamed: it can be larger than memory, and --timeout does not
apply.`,
		Example: `  warren image import busybox.tar
  warren image import app.tar --node edge-2
  docker save busybox:1.36 | ssh edge-1 warren image import -
  warren image import app.tar -o json`,
		Args: exactArgs(1, "one FILE (or - for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	cmd.Flags().StringVar(&o.node, "node", "", "load the image into this `NODE` (name or ID) only")
	return cmd
}

func (o *imageImportOptions) run(cmd *cobra.Command, file string) error {
	// The archive is opened and its first chunk read before anything is
	// sent: a missing, unreadable or empty file changes nothing.
	r, name, err := openArchive(cmd, file)
	if err != nil {
		return err
	}
	defer r.Close()
	buf := make([]byte, importChunkSize)
	n, err := readChunk(r, buf)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("%s is empty: nothing to import", name)
	}

	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel() // on a read error, the cancel tells the agent to drop what it got
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	progress := cmd.ErrOrStderr()
	resp, err := api.ImportArchive(ctx, c, o.node, buf[:n], r, func(p *apiv1.NodeImport) {
		fmt.Fprintln(progress, importProgressLine(p))
	})
	if err != nil {
		if errors.Is(err, api.ErrArchiveRead) {
			return fmt.Errorf("%s: %w (the import was abandoned)", name, err)
		}
		return err
	}
	out := cmd.OutOrStdout()
	if o.g.outputOr(outputTable) == outputJSON {
		return writeJSON(out, resp)
	}
	if err := writeTable(out, imageImportHeader, importedRows(resp.GetImages())); err != nil {
		return err
	}
	if len(resp.GetResults()) == 0 {
		nodes := "no node"
		if len(resp.GetNodes()) > 0 {
			nodes = strings.Join(resp.GetNodes(), ", ")
		}
		_, err = fmt.Fprintf(out, "Imported on %s\n", nodes)
		return err
	}
	var failed []string
	for _, res := range resp.GetResults() {
		if res.GetError() != "" {
			failed = append(failed, res.GetNode())
			fmt.Fprintf(out, "%s: failed: %s\n", res.GetNode(), res.GetError())
			continue
		}
		fmt.Fprintf(out, "%s: imported\n", res.GetNode())
	}
	if len(failed) > 0 {
		return fmt.Errorf("the import failed on %s", strings.Join(failed, ", "))
	}
	return nil
}

// importProgressLine is a node's progress as the CLI prints it on stderr:
// "w1: 12MiB sent", "w1: done, 12MiB", "w1: failed: why".
func importProgressLine(p *apiv1.NodeImport) string {
	switch {
	case p.GetError() != "":
		return fmt.Sprintf("%s: failed: %s", p.GetNode(), p.GetError())
	case p.GetDone():
		return fmt.Sprintf("%s: done, %s", p.GetNode(), humanSize(p.GetBytesSent()))
	}
	return fmt.Sprintf("%s: %s sent", p.GetNode(), humanSize(p.GetBytesSent()))
}

// openArchive opens file, or standard input for "-"; name is how errors
// call it.
func openArchive(cmd *cobra.Command, file string) (r io.ReadCloser, name string, err error) {
	if file == "-" {
		in := cmd.InOrStdin()
		if isTerminal(in) {
			return nil, "", usageErrorf("standard input is a terminal: pipe the archive in (docker save IMAGE | warren image import -) or give a FILE")
		}
		return io.NopCloser(in), "standard input", nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, "", fmt.Errorf("image archive: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, "", fmt.Errorf("image archive %s is a directory: give the tarball (docker save -o FILE IMAGE makes one)", file)
	}
	return f, file, nil
}

// readChunk fills buf as far as r goes: a short count only at the end.
func readChunk(r io.Reader, buf []byte) (int, error) {
	n, err := io.ReadFull(r, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return n, err
}

var imageImportHeader = []string{"REF", "DIGEST", "SIZE"}

// importedRows are the rows of `image import`.
func importedRows(images []*apiv1.ImportedImage) [][]string {
	rows := make([][]string, 0, len(images))
	for _, im := range images {
		rows = append(rows, []string{im.GetRef(), shortDigest(im.GetDigest()), humanSize(im.GetSize())})
	}
	return rows
}

// shortDigest is "sha256:" and the first 12 hex digits.
func shortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok {
		return shortID(d)
	}
	return algo + ":" + shortID(hex)
}

// humanSize is a size to three significant digits in the largest binary
// unit under it: 4404019 is "4.2MiB", 512 is "512B".
func humanSize(b int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, i := float64(b), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatInt(b, 10) + "B"
	}
	prec := 2
	switch {
	case v >= 100:
		prec = 0
	case v >= 10:
		prec = 1
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s + units[i]
}

type imageListOptions struct {
	g    *globalOptions
	node string
}

func newImageListCmd(g *globalOptions) *cobra.Command {
	o := &imageListOptions{g: g}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the images on every worker",
		Long: `List the images in the runtime of every ready worker (--node: of one node),
one row per node and image: NODE, REF, DIGEST, SIZE. A node that does not
answer is reported on stderr and the command exits with status 1. -o json
prints the API's ListImagesResponse.`,
		Example: `  warren image ls
  warren image ls --node edge-2`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.node, "node", "", "list the images of this `NODE` (name or ID) only")
	return cmd
}

func (o *imageListOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.ListImages(ctx, &apiv1.ListImagesRequest{Node: o.node})
	if err != nil {
		return err
	}
	if o.g.outputOr(outputTable) == outputJSON {
		return writeJSON(cmd.OutOrStdout(), resp)
	}
	var rows [][]string
	var failed []error
	for _, n := range resp.GetNodes() {
		if n.GetError() != "" {
			failed = append(failed, fmt.Errorf("node %s: %s", n.GetNode(), n.GetError()))
			continue
		}
		for _, r := range importedRows(n.GetImages()) {
			rows = append(rows, append([]string{n.GetNode()}, r...))
		}
	}
	if err := writeTable(cmd.OutOrStdout(), append([]string{"NODE"}, imageImportHeader...), rows); err != nil {
		return err
	}
	return errors.Join(failed...)
}
