"""The Glassbox data plane: the model servers a cluster runs beside each other, one room each.

    predictor/        the PyTorch model server (dynamic batching), and the small example models
    explainer/        the explainer server: its requests, its workers and their admission, its records, its metrics
    methods/          the explanation methods the explainer hosts (Anchors, KernelSHAP, ...)
    predictor_calls/  the explainer's only way to the model: the predictor's API over pooled HTTP
    detector/         the outlier detector server and what it fits
    records/          explanation records: what identifies an answer, the schema, the store
    data/             what the servers load and draw: storage, model artifacts, reference rows, pictures
    serving/          what every server shares: kserve's ModelServer on uvloop, the request guard, bodies, errors

Each room imports only those listed below it (and the contract); each of the three servers runs as
`python -m glassbox.explainers.<its room>`.
"""
