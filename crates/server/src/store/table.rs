//! What the table modules share: a row type names its table and columns
//! ([`Table`]) and binds its values ([`Insert`]); the store reads, lists,
//! pages, inserts and deletes rows by column equality ([`Match`]). The SQL
//! is built here once, portable (`$N` placeholders, which SQLite accepts
//! too), so it runs on both databases through the Any driver.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, FromRow};

use super::{like_pattern, Store, StoreError, StoreResult};

/// A query with some of its values bound.
pub(super) type Query<'q> = sqlx::query::Query<'q, Any, AnyArguments<'q>>;
/// The same, reading rows of type `T`.
type QueryAs<'q, T> = sqlx::query::QueryAs<'q, Any, T, AnyArguments<'q>>;

/// A row type read from one table.
pub(super) trait Table: for<'r> FromRow<'r, AnyRow> + Send + Unpin {
    /// The table's name.
    const NAME: &'static str;
    /// The columns the row reads, comma-separated.
    const COLUMNS: &'static str;
}

/// A row type written whole to its table.
pub(super) trait Insert: Table {
    /// Bind each column's value, in [`Table::COLUMNS`] order.
    fn bind_values<'q>(&'q self, query: Query<'q>) -> Query<'q>;
}

/// The rows whose `column = value` for every pair (no pairs: every row).
/// Columns are names written in the code, never input.
pub(super) type Match<'a> = &'a [(&'static str, &'a str)];

/// `INSERT INTO` the table, its columns and then `extra` ones, with a
/// placeholder for each.
pub(super) fn insert_sql<T: Table>(extra: &[&str]) -> String {
    let mut columns = T::COLUMNS.to_owned();
    for column in extra {
        columns.push_str(", ");
        columns.push_str(column);
    }
    let placeholders: Vec<String> = (1..=columns.split(',').count())
        .map(|i| format!("${i}"))
        .collect();
    format!(
        "INSERT INTO {} ({columns}) VALUES ({})",
        T::NAME,
        placeholders.join(", ")
    )
}

/// `SELECT` the row's columns of the rows that match.
pub(super) fn select_sql<T: Table>(filter: Match<'_>) -> String {
    format!(
        "SELECT {} FROM {}{}",
        T::COLUMNS,
        T::NAME,
        where_sql(filter)
    )
}

/// ` WHERE column = $1 AND ...` for `filter` (nothing if it is empty).
fn where_sql(filter: Match<'_>) -> String {
    let conditions: Vec<String> = filter
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!("{column} = ${}", i + 1))
        .collect();
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// `sql` reading rows, with the values of `filter` bound.
fn select<'q, T: Table>(sql: &'q str, filter: Match<'q>) -> QueryAs<'q, T> {
    let mut query = sqlx::query_as(sql);
    for (_, value) in filter {
        query = query.bind(*value);
    }
    query
}

impl Store {
    /// Insert `row`; [`StoreError::Conflict`] if a unique key is taken.
    pub(super) async fn insert_row<T: Insert>(&self, row: &T) -> StoreResult<()> {
        let sql = insert_sql::<T>(&[]);
        row.bind_values(sqlx::query(&sql))
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// The one row that matches (the filter names a unique key).
    pub(super) async fn find<T: Table>(&self, filter: Match<'_>) -> StoreResult<Option<T>> {
        let sql = select_sql::<T>(filter);
        Ok(select(&sql, filter).fetch_optional(&self.pool).await?)
    }

    /// Every row that matches, sorted by `order_by` (SQL, from the code).
    pub(super) async fn find_all<T: Table>(
        &self,
        filter: Match<'_>,
        order_by: &str,
    ) -> StoreResult<Vec<T>> {
        let sql = format!("{} ORDER BY {order_by}", select_sql::<T>(filter));
        Ok(select(&sql, filter).fetch_all(&self.pool).await?)
    }

    /// A page of the rows that match, `limit` from `offset` in `order_by`
    /// order, and only those whose name contains `name_contains` (case
    /// folded) if given.
    pub(super) async fn find_page<T: Table>(
        &self,
        filter: Match<'_>,
        name_contains: Option<&str>,
        order_by: &str,
        (limit, offset): (i64, i64),
    ) -> StoreResult<Vec<T>> {
        let mut sql = select_sql::<T>(filter);
        let mut next = filter.len() + 1;
        if name_contains.is_some() {
            let glue = if filter.is_empty() { "WHERE" } else { "AND" };
            sql.push_str(&format!(" {glue} LOWER(name) LIKE ${next} ESCAPE '\\'"));
            next += 1;
        }
        sql.push_str(&format!(
            " ORDER BY {order_by} LIMIT ${next} OFFSET ${}",
            next + 1
        ));
        let mut query = select(&sql, filter);
        if let Some(s) = name_contains {
            query = query.bind(like_pattern(s));
        }
        Ok(query.bind(limit).bind(offset).fetch_all(&self.pool).await?)
    }

    /// Delete the rows of `table` that match; how many there were.
    pub(super) async fn delete_where(&self, table: &str, filter: Match<'_>) -> StoreResult<u64> {
        debug_assert!(!filter.is_empty(), "delete_where without a filter");
        let sql = format!("DELETE FROM {table}{}", where_sql(filter));
        let mut query = sqlx::query(&sql);
        for (_, value) in filter {
            query = query.bind(*value);
        }
        Ok(query.execute(&self.pool).await?.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::{insert_sql, select_sql, Table};

    #[allow(dead_code)] // only its SQL is looked at
    #[derive(sqlx::FromRow)]
    struct Pet {
        id: String,
        tenant_id: String,
        name: String,
    }

    impl Table for Pet {
        const NAME: &'static str = "pets";
        const COLUMNS: &'static str = "id, tenant_id, name";
    }

    #[test]
    fn insert_has_a_placeholder_per_column() {
        assert_eq!(
            insert_sql::<Pet>(&[]),
            "INSERT INTO pets (id, tenant_id, name) VALUES ($1, $2, $3)"
        );
        assert_eq!(
            insert_sql::<Pet>(&["labels", "created_by"]),
            "INSERT INTO pets (id, tenant_id, name, labels, created_by) VALUES ($1, $2, $3, $4, $5)"
        );
    }

    #[test]
    fn select_matches_every_pair() {
        assert_eq!(
            select_sql::<Pet>(&[]),
            "SELECT id, tenant_id, name FROM pets"
        );
        assert_eq!(
            select_sql::<Pet>(&[("tenant_id", "t"), ("name", "n")]),
            "SELECT id, tenant_id, name FROM pets WHERE tenant_id = $1 AND name = $2"
        );
    }
}
