// repclass motifs: the sequences, residues and motifs behind a model's predictions on a store
// (sequences.tsv, repertoires.tsv, motifs.tsv, motifs.json, logos/, report.html).
// Options (--sample, --class, --top-sequences, --motifs, --ig-steps, --seed): task.ext.args.
process REPCLASS_MOTIFS {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    conda "${moduleDir}/environment.yml"
    container "${ task.ext.use_gpu ? 'docker.io/library/repclass:0.1.0-cuda' : 'docker.io/library/repclass:0.1.0-cpu' }"

    input:
    tuple val(meta), path(model), path(store)

    output:
    tuple val(meta), path("*.motifs")                , emit: motifs
    tuple val(meta), path("*.motifs/report.html")    , emit: report
    tuple val(meta), path("*.motifs/motifs.tsv")     , emit: tsv
    tuple val(meta), path("*.motifs/sequences.tsv")  , emit: sequences
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
    repclass motifs \\
        ${model} \\
        ${store} \\
        --out ${prefix}.motifs \\
        --device ${device} \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.motifs
    touch ${prefix}.motifs/report.html ${prefix}.motifs/motifs.tsv ${prefix}.motifs/sequences.tsv
    """
}
