package badgerstore_test

import (
	"context"
	"fmt"
	"os"

	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/store/badgerstore"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "badgerstore-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := badgerstore.Open(badgerstore.Config{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	id, err := store.EnsureStorageID(ctx, s, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Apply returns once the batch is fsynced.
	err = s.Apply(ctx, []store.Op{
		{Key: store.SnapshotKey("doc1", store.HeadsHash([]string{"4a7b"})), Data: []byte("automerge save()")},
		{Key: store.SyncStateKey("doc1", "peer-storage-id"), Data: []byte{0x43, 0x00}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := s.Close(); err != nil {
		fmt.Println(err)
		return
	}

	// Everything acknowledged is there after reopening.
	s, err = badgerstore.Open(badgerstore.Config{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	again, _ := store.EnsureStorageID(ctx, s, nil)
	fmt.Println("same storage id:", again == id)
	chunks, _ := s.LoadRange(ctx, store.DocPrefix("doc1"))
	for _, c := range chunks {
		fmt.Println(c.Key[1], len(c.Data))
	}
	// Output:
	// same storage id: true
	// snapshot 16
	// sync-state 2
}
