package lb

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A relay is one forwarded connection whose whole state is in the kernel:
// the client's socket, the backend's socket and a pipe each way. Bytes go
// socket → pipe → socket with splice(2) and never through this process's
// memory, and no counter or buffer of the relay lives here. So any process
// that holds the relay's descriptors can carry it on exactly where another
// one stopped, even one killed between two system calls, without losing
// or repeating a byte: it first empties the pipes, then goes on. That is
// how a replica's sibling takes over its connections (link.go).
//
// At most one process pumps a relay at a time; the others only hold its
// descriptors.
type relay struct {
	id       uint64
	client   *os.File
	clientFD int
	// Set once attached to a backend.
	backend   *os.File
	backendFD int
	addr      string // the backend's address
	up, down  [2]int // pipes client→backend and backend→client: read and write ends

	mu      sync.Mutex
	stopped bool // handed over: pumps stop without touching the sockets
	adopted bool // from the sibling
	ended   bool
}

// chunk is the most one splice moves (a pipe's default capacity).
const chunk = 64 << 10

// newRelay wraps an accepted client socket (a non-blocking descriptor,
// which the relay owns).
func newRelay(id uint64, clientFD int) *relay {
	return &relay{id: id, client: os.NewFile(uintptr(clientFD), "client"), clientFD: clientFD,
		backendFD: -1, up: [2]int{-1, -1}, down: [2]int{-1, -1}}
}

// attach gives the relay its backend socket (owned) and makes its pipes.
func (r *relay) attach(addr string, backendFD int) error {
	if err := unix.Pipe2(r.up[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	if err := unix.Pipe2(r.down[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(r.up[0])
		unix.Close(r.up[1])
		r.up = [2]int{-1, -1}
		return fmt.Errorf("pipe: %w", err)
	}
	r.addr = addr
	r.backend, r.backendFD = os.NewFile(uintptr(backendFD), "backend"), backendFD
	return nil
}

// adopt makes a relay of descriptors received from a sibling (owned).
func adoptRelay(id uint64, addr string, fds []int) *relay {
	r := newRelay(id, fds[0])
	r.adopted = true
	if len(fds) == 6 {
		r.addr = addr
		r.backend, r.backendFD = os.NewFile(uintptr(fds[1]), "backend"), fds[1]
		r.up = [2]int{fds[2], fds[3]}
		r.down = [2]int{fds[4], fds[5]}
	}
	return r
}

// attached reports whether the relay has its backend.
func (r *relay) attached() bool { return r.backend != nil }

// fds are the relay's descriptors in the order adoptRelay takes them.
func (r *relay) fds() []int {
	out := []int{r.clientFD}
	if r.attached() {
		out = append(out, r.backendFD, r.up[0], r.up[1], r.down[0], r.down[1])
	}
	return out
}

// run pumps both ways until both directions end (or one fails, or the
// other lingers for grace after the first ended), then ends the relay.
// It returns false, leaving the relay as it is, when it was stopped to be
// handed over, and why the relay ended (nil: both ways ended cleanly).
func (r *relay) run(grace time.Duration) (bool, error) {
	done := make(chan error, 2)
	go func() { done <- pump(r.client, r.backend, r.up) }()
	go func() { done <- pump(r.backend, r.client, r.down) }()
	err := <-done
	if err != nil && !r.isStopped() {
		r.kill() // one way failed: end the other at once
	}
	select {
	case err2 := <-done:
		err = errors.Join(err, err2)
	case <-time.After(grace):
		r.kill()
		<-done
	}
	if r.isStopped() {
		return false, nil
	}
	return true, err
}

// pump moves bytes from src to dst through the pipe p until src ends (then
// it shuts dst's sending side) or fails, or a deadline stops it. It empties
// the pipe first: a previous owner may have left bytes there.
func pump(src, dst *os.File, p [2]int) error {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	for {
		if err := flush(dstRC, p[0]); err != nil {
			return err
		}
		var n int
		var serr error
		err := srcRC.Read(func(fd uintptr) bool {
			n, serr = spliceRetry(int(fd), p[1], chunk)
			return serr != unix.EAGAIN
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		if n == 0 { // end of stream
			if err := flush(dstRC, p[0]); err != nil {
				return err
			}
			return shutdownRaw(dstRC, unix.SHUT_WR)
		}
	}
}

// flush moves everything in the pipe whose read end is r to dst.
func flush(dst syscall.RawConn, r int) error {
	for {
		n, err := unix.IoctlGetInt(r, unix.TIOCINQ)
		if err != nil {
			return fmt.Errorf("pipe: %w", err)
		}
		if n == 0 {
			return nil
		}
		var serr error
		err = dst.Write(func(fd uintptr) bool {
			_, serr = spliceRetry(r, int(fd), n)
			return serr != unix.EAGAIN
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
	}
}

func spliceRetry(in, out, n int) (int, error) {
	for {
		m, err := unix.Splice(in, nil, out, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err != unix.EINTR {
			return int(m), err
		}
	}
}

func shutdownRaw(rc syscall.RawConn, how int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), how) }); err != nil {
		return err
	}
	if serr == unix.ENOTCONN {
		return nil
	}
	return serr
}

func (r *relay) isStopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

// stop makes the pumps return without touching the sockets, so that
// another process can carry the relay on. Safe to call before run.
func (r *relay) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	now := time.Now()
	r.client.SetDeadline(now)
	if r.backend != nil {
		r.backend.SetDeadline(now)
	}
}

// kill shuts both sockets down for good (every holder's copy: the peer's
// descriptors refer to the same sockets), which ends the pumps.
func (r *relay) kill() {
	for _, f := range []*os.File{r.client, r.backend} {
		if f == nil {
			continue
		}
		if rc, err := f.SyscallConn(); err == nil {
			shutdownRaw(rc, unix.SHUT_RDWR)
		}
	}
}

// end shuts the sockets down and closes this process's descriptors.
func (r *relay) end() {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	r.ended = true
	r.mu.Unlock()
	r.kill()
	r.release()
}

// release closes this process's descriptors without touching the sockets
// (a sibling's copies keep them open).
func (r *relay) release() {
	r.client.Close()
	if r.backend != nil {
		r.backend.Close()
	}
	for _, fd := range []int{r.up[0], r.up[1], r.down[0], r.down[1]} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	r.up, r.down = [2]int{-1, -1}, [2]int{-1, -1}
}
