package wire

import (
	"crypto/sha256"
	"encoding/binary"
)

// Base58 with the bitcoin alphabet, and bs58check (a payload followed by the
// first 4 bytes of its double SHA-256), as the npm packages base-x and
// bs58check that automerge-repo uses. Leading zero bytes map to leading '1'
// characters, so the encoding is a bijection: a string decodes only if it is
// the encoding of what it decodes to.

const b58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// b58Index maps a byte to its digit value, or 0xff when it is not a digit.
var b58Index = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := range len(b58Alphabet) {
		t[b58Alphabet[i]] = byte(i)
	}
	return t
}()

const (
	// maxCheckPayload bounds what ParseDocumentID and the heads helpers
	// accept: automerge-repo ids are 16 bytes and heads 32.
	maxCheckPayload = 64
	// maxCheckString is the longest bs58check string of a payload of at
	// most maxCheckPayload bytes: ceil((64+4) * log(256)/log(58)) = 93.
	maxCheckString = 93
	checksumLen    = 4
)

// b58Append appends the base58 encoding of b to dst.
func b58Append(dst []byte, b []byte) []byte {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	// log(256)/log(58) < 1.366, so len*138/100+1 digits always suffice.
	var stack [128]byte
	var digits []byte
	if n := (len(b)-zeros)*138/100 + 1; n <= len(stack) {
		digits = stack[:n]
	} else {
		digits = make([]byte, n)
	}
	// digits holds the number big-endian in base 58; used counts the low
	// digits in use.
	used := 0
	for _, c := range b[zeros:] {
		carry := int(c)
		i := 0
		for j := len(digits) - 1; (carry != 0 || i < used) && j >= 0; j-- {
			carry += 256 * int(digits[j])
			digits[j] = byte(carry % 58)
			carry /= 58
			i++
		}
		used = i
	}
	for range zeros {
		dst = append(dst, '1')
	}
	for _, d := range digits[len(digits)-used:] {
		dst = append(dst, b58Alphabet[d])
	}
	return dst
}

// b58Decode decodes s into buf and returns the decoded bytes (a suffix of
// buf), or false when s has a character outside the alphabet or does not
// fit in buf, which must be at most maxCheckPayload+checksumLen bytes.
//
// It accumulates the number in 32-bit limbs, five digits (58^5 < 2^32) at a
// time, which is about twenty times fewer steps than a byte at a time.
func b58Decode(s string, buf []byte) ([]byte, bool) {
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	var limbs [(maxCheckPayload + checksumLen + 3) / 4]uint32 // little-endian
	used := 0
	for i := zeros; i < len(s); {
		mul, add := uint64(1), uint64(0)
		for k := 0; k < 5 && i < len(s); k, i = k+1, i+1 {
			d := b58Index[s[i]]
			if d == 0xff {
				return nil, false
			}
			mul *= 58
			add = add*58 + uint64(d)
		}
		carry := add
		for j := range used {
			t := uint64(limbs[j])*mul + carry
			limbs[j] = uint32(t)
			carry = t >> 32
		}
		if carry != 0 {
			if used == len(limbs) {
				return nil, false
			}
			limbs[used] = uint32(carry)
			used++
		}
	}
	// The number's big-endian bytes, without leading zeros.
	var num [len(limbs) * 4]byte
	for j := range used {
		binary.BigEndian.PutUint32(num[len(num)-4*(j+1):], limbs[j])
	}
	digits := num[len(num)-4*used:]
	for len(digits) > 0 && digits[0] == 0 {
		digits = digits[1:]
	}
	// Leading '1's stand for leading zero bytes; the number, whose first
	// digit is not '1', has none of its own.
	n := zeros + len(digits)
	if n > len(buf) {
		return nil, false
	}
	out := buf[len(buf)-n:]
	clear(out[:zeros])
	copy(out[zeros:], digits)
	return out, true
}

func checksum(payload []byte) [checksumLen]byte {
	h1 := sha256.Sum256(payload)
	h2 := sha256.Sum256(h1[:])
	return [checksumLen]byte(h2[:checksumLen])
}

// checkAppend appends the bs58check encoding of payload to dst.
func checkAppend(dst []byte, payload []byte) []byte {
	var stack [maxCheckPayload + checksumLen]byte
	var full []byte
	if len(payload)+checksumLen <= len(stack) {
		full = stack[:0]
	}
	full = append(full, payload...)
	sum := checksum(payload)
	full = append(full, sum[:]...)
	return b58Append(dst, full)
}

// checkDecode decodes a bs58check string into buf (which must hold at least
// maxCheckPayload+checksumLen bytes) and returns the payload, a sub-slice of
// buf. It fails on an empty or over-long payload, a bad character, or a bad
// checksum.
func checkDecode(s string, buf []byte) ([]byte, bool) {
	if len(s) == 0 || len(s) > maxCheckString {
		return nil, false
	}
	full, ok := b58Decode(s, buf[:maxCheckPayload+checksumLen])
	if !ok || len(full) <= checksumLen {
		return nil, false
	}
	payload := full[:len(full)-checksumLen]
	if checksum(payload) != [checksumLen]byte(full[len(payload):]) {
		return nil, false
	}
	return payload, true
}
