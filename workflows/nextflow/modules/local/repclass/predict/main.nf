// repclass predict: score the repertoires of a store with a trained model.
// task.ext.args "--attention N" also writes each repertoire's top-N sequences by attention (a
// TSV, and the same rows as an AIRR rearrangement TSV that joins back to the input by sequence_id).
process REPCLASS_PREDICT {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    conda "${moduleDir}/environment.yml"
    container "${ task.ext.use_gpu ? 'docker.io/library/repclass:0.1.0-cuda' : 'docker.io/library/repclass:0.1.0-cpu' }"

    input:
    tuple val(meta), path(model), path(store)

    output:
    tuple val(meta), path("*.predictions.tsv")           , emit: predictions
    tuple val(meta), path("*.predictions.attention.tsv") , emit: attention, optional: true
    tuple val(meta), path("*.predictions.attention.airr.tsv"), emit: attention_airr, optional: true
    tuple val(meta), path("*.predictions.metrics.json")  , emit: metrics  , optional: true
    // versions, gathered by the workflow from the `versions` topic: (process, tool, version)
    tuple val("${task.process}"), val('repclass'), eval('repclass --version'), emit: versions_repclass, topic: versions
    tuple val("${task.process}"), val('torch'), eval('python -c "import sys, importlib.metadata as m; print(m.version(sys.argv[1]))" torch'), emit: versions_torch, topic: versions
    // the device this task computed on: `cpu`, or `cuda` and the GPU's name
    tuple val("${task.process}"), val('device'), eval("${task.ext.use_gpu ? 'echo cuda $(python -c "import torch; print(torch.cuda.get_device_name())")' : 'echo cpu'}"), emit: versions_device, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    """
    repclass predict \\
        ${model} \\
        ${store} \\
        --out ${prefix}.predictions.tsv \\
        --device ${device} \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.predictions.tsv ${prefix}.predictions.attention.tsv ${prefix}.predictions.attention.airr.tsv ${prefix}.predictions.metrics.json
    """
}
