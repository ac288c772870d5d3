// repclass train: one DeepRC model on a store. With meta.folds and meta.fold set, trains that
// fold of a k-fold cross-validation (one task per fold: --folds K --fold i).
// Seed, updates, architecture, ...: task.ext.args (e.g. "--seed 0 --updates 2000").
// On a GPU (label process_gpu; ext.use_gpu set by the `gpu` profile) it runs with --device cuda.
process REPCLASS_TRAIN {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    conda "${moduleDir}/environment.yml"
    container "${ task.ext.use_gpu ? 'docker.io/library/repclass:0.1.0-cuda' : 'docker.io/library/repclass:0.1.0-cpu' }"

    input:
    tuple val(meta), path(store)
    val target

    output:
    tuple val(meta), path("*.model")                   , emit: model
    tuple val(meta), path("*.model/model.safetensors") , emit: safetensors
    tuple val(meta), path("*.model/metrics.tsv")       , emit: metrics
    tuple val(meta), path("*.model/predictions.tsv")   , emit: predictions
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
    def fold = meta.fold ? "--folds ${meta.folds} --fold ${meta.fold}" : ''
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    """
    repclass train \\
        ${store} \\
        --target '${target}' \\
        --out ${prefix}.model \\
        ${fold} \\
        --device ${device} \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.model
    touch ${prefix}.model/model.safetensors ${prefix}.model/metrics.tsv ${prefix}.model/predictions.tsv
    """
}
