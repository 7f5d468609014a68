"""The contract between the planes, owned by neither: the resource API (`api`) and the wire between the
operator and the servers (`wire`: environment and argument names, URL paths). The operator and the data
plane both import it; it imports neither."""
