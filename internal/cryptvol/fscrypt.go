package cryptvol

import (
	"crypto/hkdf"
	"crypto/sha512"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The policy of every volume's data directory (fscrypt v2).
const (
	contentsMode  = unix.FSCRYPT_MODE_AES_256_XTS
	filenamesMode = unix.FSCRYPT_MODE_AES_256_CTS
	policyFlags   = unix.FSCRYPT_POLICY_FLAGS_PAD_32

	keyIDSize = unix.FSCRYPT_KEY_IDENTIFIER_SIZE // 16, as in KeyIdentifier's result

	// hkdfKeyIDInfo is the HKDF info from which the kernel derives a key's
	// identifier: "fscrypt\0" and HKDF_CONTEXT_KEY_IDENTIFIER (1).
	hkdfKeyIDInfo = "fscrypt\x00\x01"
)

// KeyIdentifier returns the fscrypt v2 identifier of key, as the kernel
// computes it (Documentation/filesystems/fscrypt.rst): the first 16 bytes
// of HKDF-SHA512 with key as input keying material, no salt, and info
// "fscrypt\0" followed by the context byte 1. It is what a v2 policy names
// its key by, and it reveals nothing of the key.
func KeyIdentifier(key []byte) ([16]byte, error) {
	var id [keyIDSize]byte
	if len(key) != KeySize {
		return id, fmt.Errorf("volume key must be %d bytes (AES-256-XTS), not %d", KeySize, len(key))
	}
	out, err := hkdf.Key(sha512.New, key, nil, hkdfKeyIDInfo, keyIDSize)
	if err != nil {
		return id, fmt.Errorf("key identifier: %w", err)
	}
	copy(id[:], out)
	return id, nil
}

// ioctl calls ioctl(2) on fd with a pointer argument.
func ioctl(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// openDir opens the directory dir for ioctls.
func openDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// addKey adds key to the filesystem mounted at mnt (FS_IOC_ADD_ENCRYPTION_KEY)
// and returns its identifier as the kernel computed it. Adding a key that is
// present is a no-op (and undoes a partial removal).
func addKey(mnt string, key []byte) ([keyIDSize]byte, error) {
	var id [keyIDSize]byte
	fd, err := openDir(mnt)
	if err != nil {
		return id, err
	}
	defer unix.Close(fd)

	// struct fscrypt_add_key_arg is followed by the raw key (__u8 raw[]).
	const argSize = int(unsafe.Sizeof(unix.FscryptAddKeyArg{}))
	buf := make([]byte, argSize+len(key))
	defer clear(buf)
	arg := (*unix.FscryptAddKeyArg)(unsafe.Pointer(&buf[0]))
	arg.Key_spec.Type = unix.FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER
	arg.Raw_size = uint32(len(key))
	copy(buf[argSize:], key)
	err = ioctl(fd, unix.FS_IOC_ADD_ENCRYPTION_KEY, unsafe.Pointer(&buf[0]))
	runtime.KeepAlive(buf)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) {
			return id, fmt.Errorf("add key to %s: filesystem without fscrypt v2 support: %w", mnt, err)
		}
		return id, fmt.Errorf("add key to %s: %w", mnt, err)
	}
	copy(id[:], arg.Key_spec.U[:keyIDSize])
	return id, nil
}

// removeKey removes the key id from the filesystem mounted at mnt
// (FS_IOC_REMOVE_ENCRYPTION_KEY, then for all users if others added it
// too) and returns the removal status flags
// (FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY: files still use it). A key
// that is not there is not an error.
func removeKey(mnt string, id [keyIDSize]byte) (uint32, error) {
	fd, err := openDir(mnt)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var arg unix.FscryptRemoveKeyArg
	arg.Key_spec.Type = unix.FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER
	copy(arg.Key_spec.U[:], id[:])
	err = ioctl(fd, unix.FS_IOC_REMOVE_ENCRYPTION_KEY, unsafe.Pointer(&arg))
	if err == nil && arg.Removal_status_flags&unix.FSCRYPT_KEY_REMOVAL_STATUS_FLAG_OTHER_USERS != 0 {
		arg.Removal_status_flags = 0
		err = ioctl(fd, unix.FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, unsafe.Pointer(&arg))
	}
	if errors.Is(err, unix.ENOKEY) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("remove key %x from %s: %w", id, mnt, err)
	}
	return arg.Removal_status_flags, nil
}

// policy is an fscrypt v2 policy.
type policy = unix.FscryptPolicyV2

// getPolicy returns the encryption policy of the directory dir, nil if it
// has none. An error for a missing dir satisfies errors.Is(err,
// fs.ErrNotExist). A v1 policy is returned with Version
// FSCRYPT_POLICY_V1 and no identifier.
func getPolicy(dir string) (*policy, error) {
	fd, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var arg unix.FscryptGetPolicyExArg
	arg.Size = uint64(len(arg.Policy))
	err = ioctl(fd, unix.FS_IOC_GET_ENCRYPTION_POLICY_EX, unsafe.Pointer(&arg))
	switch {
	case errors.Is(err, unix.ENODATA):
		return nil, nil // not encrypted
	case errors.Is(err, unix.EOPNOTSUPP):
		return nil, nil // filesystem without encryption: nothing is encrypted
	case err != nil:
		return nil, fmt.Errorf("encryption policy of %s: %w", dir, err)
	}
	p := &policy{Version: arg.Policy[0]}
	if p.Version == unix.FSCRYPT_POLICY_V2 && arg.Size >= uint64(unsafe.Sizeof(*p)) {
		*p = *(*policy)(unsafe.Pointer(&arg.Policy[0]))
	}
	return p, nil
}

// checkPolicy reports whether p is the policy this package sets.
func checkPolicy(p *policy) error {
	if p.Version != unix.FSCRYPT_POLICY_V2 {
		return fmt.Errorf("fscrypt policy version %d, want v2", p.Version)
	}
	if p.Contents_encryption_mode != contentsMode || p.Filenames_encryption_mode != filenamesMode || p.Flags != policyFlags {
		return fmt.Errorf("fscrypt policy contents mode %d, names mode %d, flags %#x; want %d, %d, %#x",
			p.Contents_encryption_mode, p.Filenames_encryption_mode, p.Flags, contentsMode, filenamesMode, policyFlags)
	}
	return nil
}

// setPolicy gives the empty directory dir the volume policy for the key id,
// which must have been added to its filesystem.
func setPolicy(dir string, id [keyIDSize]byte) error {
	fd, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	p := policy{
		Version:                   unix.FSCRYPT_POLICY_V2,
		Contents_encryption_mode:  contentsMode,
		Filenames_encryption_mode: filenamesMode,
		Flags:                     policyFlags,
		Master_key_identifier:     id,
	}
	if err := ioctl(fd, unix.FS_IOC_SET_ENCRYPTION_POLICY, unsafe.Pointer(&p)); err != nil {
		return fmt.Errorf("set encryption policy on %s: %w", dir, err)
	}
	return nil
}
