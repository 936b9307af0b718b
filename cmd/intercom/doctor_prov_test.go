package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"intercom/device/config"
)

func TestCheckProvisioning(t *testing.T) {
	docs := map[string]string{
		"/good.yaml":  "device: {name: Provisioned}\n",
		"/typo.yaml":  "sip: {pasword: x}\n",
		"/empty.yaml": "# nothing\n",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		doc, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(doc))
	}))
	defer srv.Close()
	local := config.Layer{Name: "local.yaml", Data: []byte("device: {name: Local}\n")}
	for _, tc := range []struct {
		path   string
		status status
		want   string
	}{
		{"/good.yaml", ok, "merges over the local file and validates"},
		{"/typo.yaml", fail, "sip.pasword: unknown key"},
		{"/empty.yaml", fail, "empty document"},
		{"/missing.yaml", fail, "404"},
	} {
		r := checkProvisioning(context.Background(), local, config.Provisioning{URL: srv.URL + tc.path})
		if r.status != tc.status || !strings.Contains(r.what, tc.want) {
			t.Errorf("%s: %s %q, want %s containing %q", tc.path, r.status, r.what, tc.status, tc.want)
		}
	}
}
