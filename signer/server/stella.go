package server

import (
	"net/http"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/schema"
)

// stellaRoutes registers the endpoints of issue 18 (Stella payload types).
func (s *Server) stellaRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+api.PathSchemas, listSchemas)
	mux.HandleFunc("GET "+api.PathSchemas+"/{file}", getSchema)
}

func listSchemas(w http.ResponseWriter, r *http.Request) {
	resp := api.SchemasResponse{}
	for _, t := range schema.Types {
		resp.Schemas = append(resp.Schemas, api.SchemaInfo{Name: t.Name, Version: t.Version, PredicateType: t.PredicateType,
			Aliases: t.Aliases, ID: t.ID(), Path: api.PathSchemas + "/" + t.File()})
	}
	writeJSON(w, http.StatusOK, resp)
}

func getSchema(w http.ResponseWriter, r *http.Request) {
	b, ok := schema.File(r.PathValue("file"))
	if !ok {
		writeJSON(w, http.StatusNotFound, api.Error{Code: "not_found", Message: "no such schema: " + r.PathValue("file")})
		return
	}
	w.Header().Set("Content-Type", "application/schema+json")
	w.Write(b)
}
