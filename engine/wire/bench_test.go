package wire

import (
	"testing"
)

func benchSyncMessage(size int) Message {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	return Message{Type: TypeSync, SenderID: "storage-server-relay-1", TargetID: "peer-x4k2j9s8d7f",
		DocumentID: capturedDocID, Data: data}
}

var benchSizes = []struct {
	name string
	size int
}{{"1KB", 1 << 10}, {"64KB", 64 << 10}}

func BenchmarkDecodeSync(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			frame, err := Encode(benchSyncMessage(s.size))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			frames := 0
			for b.Loop() {
				if _, err := Decode(frame); err != nil {
					b.Fatal(err)
				}
				frames++
			}
			b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

func BenchmarkEncodeSync(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			m := benchSyncMessage(s.size)
			frame, err := Encode(m)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			frames := 0
			for b.Loop() {
				if _, err := Encode(m); err != nil {
					b.Fatal(err)
				}
				frames++
			}
			b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkAppendEncodeSync reuses one buffer, as a write pump can.
func BenchmarkAppendEncodeSync(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			m := benchSyncMessage(s.size)
			buf, err := Encode(m)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			frames := 0
			for b.Loop() {
				if buf, err = AppendEncode(buf[:0], m); err != nil {
					b.Fatal(err)
				}
				frames++
			}
			b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
