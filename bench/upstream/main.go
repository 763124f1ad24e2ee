// bench-upstream: an in-memory S3 server for the benchmark (bench/run.py), fast enough that it
// is not what limits PUT or GET. It answers what s3proxy, nginx, wrk, curl and boto3 send it,
// path-style, without checking signatures or checksums:
//
//   - PUT/GET/HEAD/DELETE of objects, with user metadata (x-amz-meta-*), an ETag, one byte
//     range (bytes=a-b, a-, -n), If-Match and If-None-Match;
//   - multipart: CreateMultipartUpload, UploadPart, ListParts, CompleteMultipartUpload, Abort;
//   - object tagging (s3proxy keeps a multipart object's manifest in a tag);
//   - bodies plain or aws-chunked (STREAMING-* payloads, trailers read and ignored).
//
// Keys under "sink/" are not kept: their bodies are read (and unframed) and dropped, so a PUT
// load measures the sender, not the store. Every ETag is a counter, not an MD5 (hashing would
// make the store the bottleneck). GET /_bench/requests answers how many requests it served.
// Listens on 127.0.0.1 only.
package main

import (
	"bufio"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type object struct {
	pieces  [][]byte // the body, in the pieces it arrived in (multipart: one per part)
	size    int64
	etag    string
	meta    http.Header // x-amz-meta-* and Content-Type
	tagging []byte
	mtime   time.Time
}

type upload struct {
	meta  http.Header
	parts map[int]*object
}

type store struct {
	mu       sync.RWMutex
	objects  map[string]*object
	uploads  map[string]*upload
	counter  atomic.Uint64
	requests atomic.Uint64 // served, for GET /_bench/requests
}

func (s *store) nextETag(suffix string) string {
	return fmt.Sprintf("\"%032x%s\"", s.counter.Add(1), suffix)
}

const sinkPrefix = "sink/"

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address (loopback only)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || (host != "127.0.0.1" && host != "localhost") {
		log.Fatalf("bench-upstream listens on 127.0.0.1 only, not %q", *listen)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	s := &store{objects: map[string]*object{}, uploads: map[string]*upload{}}
	server := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	log.Fatal(server.Serve(ln))
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_bench/requests" {
		fmt.Fprintf(w, "%d\n", s.requests.Load())
		return
	}
	s.requests.Add(1)
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	if key == "" {
		s.bucketRequest(w, r, bucket)
		return
	}
	name := bucket + "/" + key
	switch {
	case q.Has("tagging"):
		s.tagging(w, r, name)
	case r.Method == http.MethodPost && q.Has("uploads"):
		s.createUpload(w, r, bucket, key)
	case q.Has("uploadId"):
		s.uploadRequest(w, r, bucket, key, q)
	case r.Method == http.MethodPut:
		s.putObject(w, r, name, key)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		s.getObject(w, r, name)
	case r.Method == http.MethodDelete:
		s.mu.Lock()
		delete(s.objects, name)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		s3Error(w, http.StatusNotImplemented, "NotImplemented", "not in the benchmark upstream")
	}
}

func (s *store) bucketRequest(w http.ResponseWriter, r *http.Request, bucket string) {
	io.Copy(io.Discard, r.Body)
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
			`<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>%s</Name>`+
			`<IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>`, bucket)
		return
	}
	w.WriteHeader(http.StatusOK) // CreateBucket, HeadBucket: every bucket exists
}

func s3Error(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code>`+
		`<Message>%s</Message></Error>`, code, message)
}

func metadataOf(h http.Header) http.Header {
	meta := http.Header{}
	for k, v := range h {
		lower := strings.ToLower(k)
		if strings.HasPrefix(lower, "x-amz-meta-") || lower == "content-type" {
			meta[k] = v
		}
	}
	return meta
}

// readBody returns the request body with any aws-chunked framing removed; keep=false reads
// and drops it (only the length is returned).
func readBody(r *http.Request, keep bool) ([]byte, int64, error) {
	sha := strings.ToUpper(r.Header.Get("x-amz-content-sha256"))
	chunked := strings.HasPrefix(sha, "STREAMING-") ||
		strings.Contains(strings.ToLower(r.Header.Get("Content-Encoding")), "aws-chunked")
	var expected int64 = -1
	if chunked {
		if d, err := strconv.ParseInt(r.Header.Get("x-amz-decoded-content-length"), 10, 64); err == nil {
			expected = d
		}
	} else if r.ContentLength >= 0 {
		expected = r.ContentLength
	}
	var buf []byte
	if keep && expected >= 0 {
		buf = make([]byte, 0, expected)
	}
	if !chunked {
		if !keep {
			n, err := io.Copy(io.Discard, r.Body)
			return nil, n, err
		}
		w := &appender{buf: buf}
		n, err := io.Copy(w, r.Body)
		return w.buf, n, err
	}
	br := bufio.NewReaderSize(r.Body, 64*1024)
	var total int64
	scratch := make([]byte, 256*1024)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, total, err
		}
		sizeText, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		size, err := strconv.ParseInt(sizeText, 16, 64)
		if err != nil {
			return nil, total, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			for { // trailers, up to the empty line (or the end of the body)
				t, err := br.ReadString('\n')
				if strings.TrimSpace(t) == "" || err != nil {
					break
				}
			}
			io.Copy(io.Discard, br)
			return buf, total, nil
		}
		for left := size; left > 0; {
			n := int64(len(scratch))
			if left < n {
				n = left
			}
			if keep {
				start := len(buf)
				if cap(buf)-start < int(n) {
					buf = append(buf[:start:start], make([]byte, n)...)
				}
				buf = buf[:start+int(n)]
				if _, err := io.ReadFull(br, buf[start:]); err != nil {
					return nil, total, err
				}
			} else if _, err := io.ReadFull(br, scratch[:n]); err != nil {
				return nil, total, err
			}
			left -= n
			total += n
		}
		if _, err := br.Discard(2); err != nil { // CRLF after the chunk's data
			return nil, total, err
		}
	}
}

type appender struct{ buf []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.buf = append(a.buf, p...)
	return len(p), nil
}

func (s *store) putObject(w http.ResponseWriter, r *http.Request, name, key string) {
	keep := !strings.HasPrefix(key, sinkPrefix)
	body, size, err := readBody(r, keep)
	if err != nil {
		s3Error(w, http.StatusBadRequest, "IncompleteBody", err.Error())
		return
	}
	etag := s.nextETag("")
	if keep {
		obj := &object{pieces: [][]byte{body}, size: size, etag: etag, meta: metadataOf(r.Header),
			mtime: time.Now()}
		s.mu.Lock()
		s.objects[name] = obj
		s.mu.Unlock()
	}
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusOK)
}

func (s *store) find(name string) *object {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.objects[name]
}

func etagMatches(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimSpace(v)
		if v == "*" || strings.Trim(v, "\"") == strings.Trim(etag, "\"") {
			return true
		}
	}
	return false
}

// parseRange gives [first, last] of a single-range header; ok=false means "whole object".
func parseRange(value string, size int64) (first, last int64, ok bool, satisfiable bool) {
	value = strings.TrimSpace(value)
	spec := strings.TrimPrefix(value, "bytes=")
	if spec == value || strings.Contains(spec, ",") {
		return 0, 0, false, true
	}
	a, b, _ := strings.Cut(spec, "-")
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil {
			return 0, 0, false, true
		}
		if n == 0 || size == 0 {
			return 0, 0, false, false
		}
		if n > size {
			n = size
		}
		return size - n, size - 1, true, true
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false, true
	}
	last = size - 1
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil {
			return 0, 0, false, true
		}
		if last > size-1 {
			last = size - 1
		}
	}
	if first >= size || first > last {
		return 0, 0, false, false
	}
	return first, last, true, true
}

func (s *store) getObject(w http.ResponseWriter, r *http.Request, name string) {
	obj := s.find(name)
	if obj == nil {
		s3Error(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	h := w.Header()
	if v := r.Header.Get("If-Match"); v != "" && !etagMatches(v, obj.etag) {
		s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed", "If-Match")
		return
	}
	if v := r.Header.Get("If-None-Match"); v != "" && etagMatches(v, obj.etag) {
		h.Set("ETag", obj.etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	for k, v := range obj.meta {
		h[k] = v
	}
	h.Set("ETag", obj.etag)
	h.Set("Last-Modified", obj.mtime.UTC().Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	first, last, ranged := int64(0), obj.size-1, false
	if v := r.Header.Get("Range"); v != "" {
		var satisfiable bool
		first, last, ranged, satisfiable = parseRange(v, obj.size)
		if !satisfiable {
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", obj.size))
			s3Error(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "range")
			return
		}
		if !ranged {
			first, last = 0, obj.size-1
		}
	}
	h.Set("Content-Length", strconv.FormatInt(last-first+1, 10))
	status := http.StatusOK
	if ranged {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, obj.size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead || obj.size == 0 {
		return
	}
	var offset int64
	for _, piece := range obj.pieces {
		end := offset + int64(len(piece))
		if end > first && offset <= last {
			lo, hi := max64(first, offset)-offset, min64(last+1, end)-offset
			if _, err := w.Write(piece[lo:hi]); err != nil {
				return
			}
		}
		offset = end
	}
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func min64(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

func (s *store) tagging(w http.ResponseWriter, r *http.Request, name string) {
	body, _, err := readBody(r, true)
	if err != nil {
		s3Error(w, http.StatusBadRequest, "IncompleteBody", err.Error())
		return
	}
	s.mu.Lock()
	obj := s.objects[name]
	if obj != nil && r.Method == http.MethodPut {
		obj.tagging = body
	} else if obj != nil && r.Method == http.MethodDelete {
		obj.tagging = nil
	}
	var tags []byte
	if obj != nil {
		tags = obj.tagging
	}
	s.mu.Unlock()
	if obj == nil {
		s3Error(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "application/xml")
		if tags == nil {
			tags = []byte(`<?xml version="1.0" encoding="UTF-8"?>` +
				`<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet></TagSet></Tagging>`)
		}
		w.Write(tags)
	case http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

func (s *store) createUpload(w http.ResponseWriter, r *http.Request, bucket, key string) {
	io.Copy(io.Discard, r.Body)
	id := fmt.Sprintf("upload-%d", s.counter.Add(1))
	s.mu.Lock()
	s.uploads[id] = &upload{meta: metadataOf(r.Header), parts: map[int]*object{}}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`+
		`<Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>`,
		bucket, xmlText(key), id)
}

func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

type completion struct {
	Parts []struct {
		PartNumber int
	} `xml:"Part"`
}

func (s *store) uploadRequest(w http.ResponseWriter, r *http.Request, bucket, key string, q map[string][]string) {
	id := q["uploadId"][0]
	s.mu.RLock()
	up := s.uploads[id]
	s.mu.RUnlock()
	if up == nil {
		io.Copy(io.Discard, r.Body)
		s3Error(w, http.StatusNotFound, "NoSuchUpload", "The specified upload does not exist.")
		return
	}
	switch r.Method {
	case http.MethodPut: // UploadPart
		number, err := strconv.Atoi(firstOf(q, "partNumber"))
		if err != nil || number < 1 || number > 10000 {
			s3Error(w, http.StatusBadRequest, "InvalidArgument", "partNumber")
			return
		}
		body, size, err := readBody(r, true)
		if err != nil {
			s3Error(w, http.StatusBadRequest, "IncompleteBody", err.Error())
			return
		}
		part := &object{pieces: [][]byte{body}, size: size, etag: s.nextETag(""), mtime: time.Now()}
		s.mu.Lock()
		up.parts[number] = part
		s.mu.Unlock()
		w.Header().Set("ETag", part.etag)
		w.WriteHeader(http.StatusOK)
	case http.MethodGet: // ListParts, one page
		s.mu.RLock()
		numbers := make([]int, 0, len(up.parts))
		for n := range up.parts {
			numbers = append(numbers, n)
		}
		sort.Ints(numbers)
		var b strings.Builder
		fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+
			`<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>%s</Bucket>`+
			`<Key>%s</Key><UploadId>%s</UploadId><IsTruncated>false</IsTruncated>`,
			bucket, xmlText(key), id)
		for _, n := range numbers {
			p := up.parts[n]
			fmt.Fprintf(&b, `<Part><PartNumber>%d</PartNumber><ETag>%s</ETag><Size>%d</Size>`+
				`<LastModified>%s</LastModified></Part>`, n, xmlText(p.etag), p.size,
				p.mtime.UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		s.mu.RUnlock()
		b.WriteString(`</ListPartsResult>`)
		w.Header().Set("Content-Type", "application/xml")
		io.WriteString(w, b.String())
	case http.MethodPost: // CompleteMultipartUpload
		s.complete(w, r, bucket, key, id, up)
	case http.MethodDelete:
		s.mu.Lock()
		delete(s.uploads, id)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		s3Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method)
	}
}

func firstOf(q map[string][]string, name string) string {
	if v := q[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *store) complete(w http.ResponseWriter, r *http.Request, bucket, key, id string, up *upload) {
	body, _, err := readBody(r, true)
	var doc completion
	if err == nil {
		err = xml.Unmarshal(body, &doc)
	}
	if err != nil || len(doc.Parts) == 0 {
		s3Error(w, http.StatusBadRequest, "MalformedXML", "CompleteMultipartUpload body")
		return
	}
	obj := &object{meta: up.meta, mtime: time.Now()}
	s.mu.Lock()
	for _, p := range doc.Parts {
		part := up.parts[p.PartNumber]
		if part == nil {
			s.mu.Unlock()
			s3Error(w, http.StatusBadRequest, "InvalidPart", strconv.Itoa(p.PartNumber))
			return
		}
		obj.pieces = append(obj.pieces, part.pieces...)
		obj.size += part.size
	}
	obj.etag = s.nextETag(fmt.Sprintf("-%d", len(doc.Parts)))
	s.objects[bucket+"/"+key] = obj
	delete(s.uploads, id)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`+
		`<Location>/%s/%s</Location><Bucket>%s</Bucket><Key>%s</Key><ETag>%s</ETag>`+
		`</CompleteMultipartUploadResult>`, bucket, xmlText(key), bucket, xmlText(key),
		xmlText(obj.etag))
}
