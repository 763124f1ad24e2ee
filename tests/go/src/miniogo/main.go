// A workload using minio-go v7 (as Debian packages it). Usage:
//
//	miniogo HOST:PORT BUCKET PREFIX
//
// Puts objects of several sizes (over http minio-go signs every chunk of the body; the largest
// goes in parts, as does one of unknown length), reads them back whole and in a range, stats
// and lists them (sizes and ETags must agree), copies one and deletes them. Prints
// {"ok": true, "checks": n} as JSON, or the first mismatch and exits 1.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"workload"
)

func get(ctx context.Context, c *minio.Client, bucket, key string, opts minio.GetObjectOptions) []byte {
	obj, err := c.GetObject(ctx, bucket, key, opts)
	workload.Must(err, "GetObject "+key)
	defer obj.Close()
	body, err := io.ReadAll(obj)
	workload.Must(err, "reading "+key)
	return body
}

func main() {
	host, bucket, prefix := os.Args[1], os.Args[2], os.Args[3]
	ctx := context.Background()
	c, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4("any", "any-secret", ""),
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
	workload.Must(err, "minio.New")
	written := map[string][]byte{}
	for i, n := range []int{0, 1000, 3*65536 + 5, 17 * 1024 * 1024} {
		key := fmt.Sprintf("%s/put-%d", prefix, n)
		body := workload.Data(n, i)
		info, err := c.PutObject(ctx, bucket, key, bytes.NewReader(body), int64(n), minio.PutObjectOptions{})
		workload.Must(err, "PutObject "+key)
		if n < 16*1024*1024 { // (one part: the ETag is the MD5 of what was sent)
			workload.Check(info.ETag == workload.MD5Hex(body), "PutObject %s ETag %s", key, info.ETag)
		}
		workload.Check(bytes.Equal(get(ctx, c, bucket, key, minio.GetObjectOptions{}), body), "GetObject %s differs", key)
		written[key] = body
	}
	unknown := prefix + "/unknown-length"
	streamed := workload.Data(1024*1024+7, 5)
	_, err = c.PutObject(ctx, bucket, unknown, bytes.NewReader(streamed), -1, minio.PutObjectOptions{PartSize: 5 * 1024 * 1024})
	workload.Must(err, "PutObject of unknown length")
	workload.Check(bytes.Equal(get(ctx, c, bucket, unknown, minio.GetObjectOptions{}), streamed), "the streamed object differs")
	written[unknown] = streamed

	ranged := fmt.Sprintf("%s/put-%d", prefix, 3*65536+5)
	opts := minio.GetObjectOptions{}
	workload.Must(opts.SetRange(65530, 65600), "SetRange")
	workload.Check(bytes.Equal(get(ctx, c, bucket, ranged, opts), written[ranged][65530:65601]), "ranged GetObject differs")

	copied := prefix + "/copied"
	_, err = c.CopyObject(ctx, minio.CopyDestOptions{Bucket: bucket, Object: copied},
		minio.CopySrcOptions{Bucket: bucket, Object: ranged})
	workload.Must(err, "CopyObject")
	workload.Check(bytes.Equal(get(ctx, c, bucket, copied, minio.GetObjectOptions{}), written[ranged]), "the copy differs")
	written[copied] = written[ranged]

	listed := 0
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
		workload.Must(obj.Err, "ListObjects")
		stat, err := c.StatObject(ctx, bucket, obj.Key, minio.StatObjectOptions{})
		workload.Must(err, "StatObject "+obj.Key)
		workload.Check(obj.Size == int64(len(written[obj.Key])) && obj.Size == stat.Size,
			"%s listed with size %d, stat %d, wrote %d", obj.Key, obj.Size, stat.Size, len(written[obj.Key]))
		workload.Check(obj.ETag == stat.ETag, "%s listed with ETag %s, stat %s", obj.Key, obj.ETag, stat.ETag)
		listed++
	}
	workload.Check(listed == len(written), "listed %d objects, wrote %d", listed, len(written))
	for key := range written {
		workload.Must(c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}), "RemoveObject "+key)
	}
	workload.Done()
}
